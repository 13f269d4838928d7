"""Which host runs which instance, and with which GPUs (pure).

`hosts` (what a host offers), `demands` (what applications ask for), `feasibility` (why a
host cannot take an instance), `load` and `preemption` (one host's bookkeeping and whom to
evict), `scheduler` (the whole decision) and `quota` (tenants' limits).
"""
