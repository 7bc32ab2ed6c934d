"""``framereel studio``: a local web app over the interactive session.

One :class:`~framereel.interactive.Session` (model loaded once) does the work, exactly as
``framereel interactive`` does: each prompt becomes ``OUT/interactive/NNNN-slug.png``, "keep"
appends its exact parameters to ``OUT/storyboard.json`` and "render film" runs the session's
``make`` (the normal resumable render + stitch, kept images reused byte for byte). The web layer
adds a job queue (one render at a time, on a worker thread, off the event loop), storyboard
edits, and server-sent events so every open tab sees the same state and live progress.

Safety: binds 127.0.0.1 by default (and then answers only to a loopback Host, against DNS
rebinding); any other ``host`` needs the random access token printed in the URL on every
request. State-changing requests must be JSON from the page's own origin. Files are served from
the output folder only (``StaticFiles`` refuses paths that leave it). The page puts prompts in
with ``textContent`` only.
"""

from .app import Studio, check_address, create_app, serve

__all__ = ["Studio", "check_address", "create_app", "serve"]
