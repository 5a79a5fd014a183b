##! Site settings for Zeek, loaded after zeek_scripts/ and the sensor's local.zeek.
##!
##! Add redefs here instead of rebuilding the image; see docs/zeek.md.  For
##! example, rotate every 15 minutes instead of every hour:
##!
##!     redef Log::default_rotation_interval = 15mins;

# Certificate validation for SSL::Invalid_Server_Cert notices uses Zeek's
# bundled Mozilla root store; add your cluster's internal CAs here if needed.
