"""API documentation: the OpenAPI 3.1 document (an operations table plus the browser
pages from the URL map) and a browsable page (public)."""
