##! Log format and rotation: JSON lines, rotated in place every hour.
##!
##! A log is written as ``<path>.log`` (``conn.log``) in Zeek's working
##! directory and renamed in place to ``<path>.<open time>.log``
##! (``conn.2026-11-22-02-00-00.log``, local time of the Zeek process: run
##! it with ``TZ=UTC``) when it rotates.  Nothing compresses, moves or
##! deletes rotated files: the enricher tails and the node's log retention
##! removes them.

@load base/frameworks/logging

module KubeZeek;

export {
	## The strftime format of the open time in a rotated log's name.
	const rotation_date_format = "%Y-%m-%d-%H-%M-%S" &redef;

	## The name a log rotates to, without the ``.log`` suffix the writer adds.
	global rotation_path: function(ri: Log::RotationFmtInfo): Log::RotationPath;
}

function rotation_path(ri: Log::RotationFmtInfo): Log::RotationPath
	{
	local opened = strftime(rotation_date_format, ri$open);
	return Log::RotationPath($file_basename=fmt("%s.%s", ri$path, opened));
	}

# One JSON object per line, times as epoch seconds.
redef LogAscii::use_json = T;

# Rotate every hour, on the hour.  For offline runs (``zeek -r``) load
# ``offline.zeek`` after the package to keep plain ``conn.log`` names.
redef Log::default_rotation_interval = 1hr;
redef Log::rotation_format_func = rotation_path;

# No post-processing: rotated files stay where they are, uncompressed.
redef Log::default_rotation_postprocessor_cmd = "";

# A log left behind by a Zeek that crashed is rotated (renamed) on the next
# start instead of being truncated, so no records are lost.  Zeek keeps
# hidden ``.shadow.<path>.log`` files next to the logs for this.
redef LogAscii::enable_leftover_log_rotation = T;
