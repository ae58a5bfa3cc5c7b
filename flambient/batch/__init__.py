"""The batch runner behind ``flambient process``, one job per module.

- :mod:`.layout`: where the bookkeeping lives (``OUT/.flambient/``) and the move from the old layout;
- :mod:`.sidecar`: the :class:`~.sidecar.Sidecar` of a final, its reader/writer, ownership of finals;
- :mod:`.summary`: :class:`~.summary.SetResult`, :class:`~.summary.BatchSummary` and their writer;
- :mod:`.fingerprint`: input hashes and the fingerprint that decides skipping;
- :mod:`.plan`: the pure skip / todo / would-process decisions;
- :mod:`.stages`: the injectable decode / compute / encode stages;
- :mod:`.pipeline`: the threads (decode, one worker per device, encode pool);
- :mod:`.runner`: one run: survey, plan, claim (locks), pipeline;
- :mod:`.signals`: SIGINT/SIGTERM stop the run cleanly;
- :mod:`.logfile`: the rotated log file.

:mod:`flambient.process` is the entry point (:func:`~flambient.process.process_shoot`).
"""
