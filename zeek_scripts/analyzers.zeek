##! The analyzers and frameworks kubezeek loads: conn, dns, http, ssl, x509,
##! files, notice and weird, plus Community ID and certificate validation.
##!
##! Everything is loaded explicitly so the package works in bare mode
##! (``zeek -b``), where nothing else is loaded: no SMB, Kerberos, SSH, FTP,
##! SMTP, PE or file extraction analyzers that would only cost CPU for a pod
##! network monitor.  Loading the same scripts in full mode is harmless.

# Site::local_nets, set from the sensor's redef file.
@load base/utils/site

# Dynamic protocol detection and analyzer.log.
@load base/frameworks/analyzer

# notice.log and weird.log.
@load base/frameworks/notice

# reporter.log: Zeek's own warnings and errors as a log, not only stderr.
@load base/frameworks/reporter

# files.log and the hashes of what the loaded analyzers extract.
@load base/frameworks/files
@load base/files/hash

# The protocols and their logs.
@load base/protocols/conn
@load base/protocols/dns
@load base/protocols/http
@load base/protocols/ssl
@load base/files/x509

# community_id on conn.log, to join with other tools' flow records.
@load policy/protocols/conn/community-id-logging

# validation_status on ssl.log and SSL::Invalid_Server_Cert notices.
@load policy/protocols/ssl/validate-certs
