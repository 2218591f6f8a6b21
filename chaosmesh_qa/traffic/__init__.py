"""Traffic during experiments: Locust (FastHttpUser) at a held rate, with a per-second client-side timeline.

``profile`` validates what to send, ``runner`` starts/stops the Locust processes (children of the
caller, never Locust imported in-process), ``timeline`` reads the JSON-lines timeline and computes
windows, phases and summaries, ``actions`` holds the ``start_traffic``/``stop_traffic`` activities.
``locustfile`` is loaded by the Locust processes only; ``aggregate`` (per-second buckets, timeline
writer) is what it uses to count, plain Python.
"""
