"""How torch's threads wait: passive when other processes are busy as framereel starts, else libgomp's default."""

from framereel.openmp import BUSY_CORES, choose_wait_policy, cpu_busy_cores


def test_passive_waits_only_when_others_keep_a_core_busy():
    env = {}
    choose_wait_policy(env, busy=BUSY_CORES + 0.5)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {}
    choose_wait_policy(env, busy=0.1)
    assert "OMP_WAIT_POLICY" not in env  # a quiet machine: spinning is the fastest wait
    assert env == {"FRAMEREEL_KEEP_OMP_WAIT_POLICY": "1"}  # and worker processes keep that choice


def test_the_users_own_setting_wins():
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    choose_wait_policy(env, busy=2.0)
    assert env == {"OMP_WAIT_POLICY": "ACTIVE"}
    env = {"FRAMEREEL_KEEP_OMP_WAIT_POLICY": "1"}
    choose_wait_policy(env, busy=2.0)
    assert "OMP_WAIT_POLICY" not in env


def test_busy_cores_is_a_share_of_this_machine():
    import os

    assert 0.0 <= cpu_busy_cores(0.02) <= (os.cpu_count() or 1) + 0.01
