"""Support for the browser pages: CSV jobs, charts, pagination, display filters."""
