"""Batch scoring: jobs of many rows split into chunks, each predicted through the
serving path and stored in the database, by Celery workers (``celery.py``) when a
broker is set, else by a thread of the web worker (``runner.py``).

``jobs`` is what views call; ``storage`` keeps jobs, chunks, progress and results;
``chunks`` predicts one chunk.
"""
