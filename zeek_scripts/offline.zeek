##! Settings for offline runs (``zeek -r``): load after the package.
##!
##! Zeek rotates every log once more when it terminates, so with the
##! package's hourly rotation a trace run would leave only
##! ``conn.<time>.log`` files.  Without rotation it leaves ``conn.log``.

redef Log::default_rotation_interval = 0secs;
