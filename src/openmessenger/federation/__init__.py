"""Federation adapters: outbound HTTPS to other Openmsg nodes."""
