"""The site store: one interface (`base`), two engines (SQLite, etcd), and what is built on it."""
