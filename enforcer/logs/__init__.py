"""Container logs at the site: error lines picked out, rate-limited and forwarded to control."""
