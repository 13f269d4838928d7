"""A multi-host site: its shared state in the site store, its leader, failover and fencing."""
