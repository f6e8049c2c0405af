"""HTTPS for the router: certificates from an ACME server (HTTP-01, answered by HAProxy itself)
or brought by the user, kept 0600 under $HEADWAY_HOME/tls, loaded into HAProxy and renewed by
the agent through the runtime API. Imports nothing here: router/haproxy.py reads
headway.tls.sites, and the rest imports the router."""
