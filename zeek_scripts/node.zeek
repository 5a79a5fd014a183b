##! The node name on every log record: the ``_node`` extension field.

@load base/frameworks/logging

module KubeZeek;

export {
	## The Kubernetes node this Zeek runs on.  Taken from ``NODE_NAME`` (set
	## by the DaemonSet from the downward API) unless a redef file sets it.
	## When empty, records carry no ``_node`` field.
	const node_name = getenv("NODE_NAME") &redef;

	## The extension fields every log record gains, each named with
	## ``Log::default_ext_prefix`` in front (``node`` becomes ``_node``).
	type Extension: record {
		node: string &log &optional;
	};

	## Builds the extension fields for a record of log *path*.
	global log_extension: function(path: string): Extension;
}

function log_extension(path: string): Extension
	{
	local ext: Extension;

	if ( node_name != "" )
		ext$node = node_name;

	return ext;
	}

redef Log::default_ext_prefix = "_";
redef Log::default_ext_func = log_extension;
