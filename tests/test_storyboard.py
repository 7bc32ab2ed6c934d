import json
from pathlib import Path

import pytest

from framereel import FramereelError, frame_seed, load_storyboard
from framereel.loader import parse_storyboard
from framereel.storyboard import DEFAULT_RUN_SEED
from framereel.validate import parse_indices


def board(tmp_path, data, name="prompts.json"):
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


@pytest.mark.parametrize("count", [1, 10, 500])
def test_any_number_of_frames(tmp_path, count):
    sb = load_storyboard(board(tmp_path, [{"prompt": f"shot {i}"} for i in range(count)]))
    assert [f.index for f in sb.frames] == list(range(count))


def test_seeds_derive_from_run_seed_and_index_unless_set(tmp_path):
    sb = load_storyboard(board(tmp_path, [{"prompt": "a"}, {"prompt": "b", "seed": 42}, {"prompt": "c"}]))
    assert [f.seed for f in sb.frames] == [DEFAULT_RUN_SEED, 42, DEFAULT_RUN_SEED + 2]
    sb = load_storyboard(board(tmp_path, [{"prompt": "a"}, {"prompt": "b"}]), run_seed=1000)
    assert [f.seed for f in sb.frames] == [1000, 1001]
    assert frame_seed(2**32 - 1, 1) == 0


def test_precedence_frame_key_beats_cli_beats_file_defaults(tmp_path):
    data = {"defaults": {"steps": 10, "guidance": 3, "seed": 5}, "frames": [{"prompt": "a", "steps": 30}, {"prompt": "b"}]}
    sb = load_storyboard(board(tmp_path, data), overrides={"guidance": 9.0, "steps": 20})
    assert [(f.steps, f.guidance) for f in sb.frames] == [(30, 9.0), (20, 9.0)]
    assert [f.seed for f in sb.frames] == [5, 6]


def test_unset_parameters_resolve_from_model_then_builtin(tmp_path):
    sb = load_storyboard(board(tmp_path, [{"prompt": "a"}, {"prompt": "b", "width": 128}]))
    assert sb.frames[0].steps is None
    resolved = sb.resolved({"width": 64, "height": 64, "guidance": 4.0})
    assert [(f.width, f.height, f.steps, f.guidance) for f in resolved.frames] == [(64, 64, 25, 4.0), (128, 64, 25, 4.0)]


def test_txt_one_prompt_per_line(tmp_path):
    sb = load_storyboard(board(tmp_path, "# my film\nfirst shot\n\n  second shot  \n", "story.txt"))
    assert [f.prompt for f in sb.frames] == ["first shot", "second shot"]


@pytest.mark.parametrize(
    "data, message",
    [
        ([], "prompts.json: no frames; add at least one prompt"),
        ("[{", "prompts.json: line 1 column 3: invalid JSON"),
        ({"prompt": "x"}, 'prompts.json: top level: unknown key "prompt"'),
        ([{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}, {"prompt": "  "}], 'prompts.json: frame 3: "prompt" must be a non-empty string'),
        ([{"prompt": 3}], 'prompts.json: frame 0: "prompt" must be a non-empty string (got 3)'),
        ([{"text": "a"}], 'prompts.json: frame 0: unknown key "text"'),
        ([{"prompt": "a", "sead": 1}], 'prompts.json: frame 0: unknown key "sead"; did you mean "seed"?'),
        ([{"prompt": "a", "negative": "x"}], 'did you mean "negative_prompt"?'),
        ([{"negative_prompt": "a"}], 'prompts.json: frame 0: missing "prompt"'),
        ([{"prompt": "a", "width": 500}], 'frame 0: "width" must be a multiple of 8'),
        ([{"prompt": "a", "height": 0}], 'frame 0: "height" must be a multiple of 8'),
        ([{"prompt": "a", "steps": 0}], '"steps" must be an integer from 1 to 1000'),
        ([{"prompt": "a", "steps": 2.5}], '"steps" must be an integer'),
        ([{"prompt": "a", "seed": -1}], '"seed" must be an integer from 0'),
        ([{"prompt": "a", "seed": True}], '"seed" must be an integer'),
        ([{"prompt": "a", "guidance": "high"}], '"guidance" schedule: expected FRAME:(VALUE) at character 1'),
        ([{"prompt": "a", "guidance": [1]}], '"guidance" must be a number'),
        ([{"prompt": "a", "duration": 0}], '"duration" must be a number of seconds greater than 0'),
        (["a", 5], 'frame 1: must be an object like {"prompt": "..."}'),
        ({"defaults": {"stepz": 3}, "frames": [{"prompt": "a"}]}, 'prompts.json: defaults: unknown key "stepz"; did you mean "steps"?'),
        ({"defaults": {"prompt": "a"}, "frames": [{"prompt": "a"}]}, 'defaults: unknown key "prompt"'),
        ({"frames": "a"}, '"frames" must be a list'),
    ],
)
def test_validation_errors_are_one_line_naming_file_frame_and_problem(tmp_path, data, message):
    with pytest.raises(FramereelError) as err:
        load_storyboard(board(tmp_path, data))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(FramereelError, match="no such file"):
        load_storyboard(tmp_path / "nope.json")


@pytest.mark.parametrize("spec, expected", [("3", [3]), ("3,5-7", [3, 5, 6, 7]), ("0-2, 1", [0, 1, 2])])
def test_parse_indices(spec, expected):
    assert parse_indices(spec, 10) == expected


@pytest.mark.parametrize("spec", ["x", "5-3", "12", "-1"])
def test_parse_indices_errors(spec):
    with pytest.raises(FramereelError):
        parse_indices(spec, 10)


def test_the_extension_decides_the_form_so_a_txt_prompt_may_start_with_a_brace(tmp_path):
    sb = load_storyboard(board(tmp_path, "{red|blue} circle, day sky\n{a|b} square\n", "story.txt"))
    assert [f.prompt for f in sb.frames] == ["{red|blue} circle, day sky", "{a|b} square"]
    # a .txt that is a JSON object is read as one (Deforum saves its settings as *_settings.txt)
    sb = load_storyboard(board(tmp_path, {"frames": [{"prompt": "a", "seed": 3}]}, "story.txt"))
    assert [(f.prompt, f.seed) for f in sb.frames] == [("a", 3)]
    with pytest.raises(FramereelError, match=r"^story.json: line 1 column 2: invalid JSON"):
        load_storyboard(board(tmp_path, "{red|blue} circle", "story.json"))  # .json is JSON, whatever it holds
    # a name that says nothing: sniffed
    assert [f.prompt for f in load_storyboard(board(tmp_path, "{red|blue} circle\n", "story")).frames] == ["{red|blue} circle"]
    assert [f.prompt for f in load_storyboard(board(tmp_path, [{"prompt": "x"}], "story")).frames] == ["x"]


def framereel_imports(module: str) -> set[str]:
    """The framereel modules ``module`` imports, lazily (inside functions) or not."""
    import ast

    import framereel

    tree = ast.parse((Path(framereel.__file__).parent / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("framereel.")}
    return found


def test_formats_are_one_way_a_loader_in_front_of_the_parser():
    assert not {"deforum", "loader"} & framereel_imports("storyboard")  # the parser knows no other format
    assert not {"storyboard", "deforum", "loader"} & framereel_imports("schedule")
    assert "loader" not in framereel_imports("deforum") and {"deforum", "storyboard"} <= framereel_imports("loader")


def test_schedules_after_a_morph_are_read_over_the_whole_film():
    """A morph's in-betweens count as frames of the film: a schedule after them is not cut short."""
    frames = parse_storyboard(json.dumps({"frames": [
        {"prompt": "a", "morph": 2}, {"prompt": "b"},
        {"prompt": "c", "init": "previous", "strength": "0:(0.2), 8:(0.6)", "guidance": "0:(2), 8:(10)"},
        *["d", "e", "f", "g", "h"]]})).frames  # 10 frames: keyframe 8 is inside the film
    assert frames[4].strength == pytest.approx(0.2 + 0.4 * 4 / 8) and frames[4].guidance == pytest.approx(2 + 8 * 4 / 8)
