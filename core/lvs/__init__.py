"""Virtual servers: real-server health checking, the LVS manager, the IPVS backend
and genhash (keepalived's checker process)."""
