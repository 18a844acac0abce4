"""Partners' channels (issue 16): landings and their embedding (``landings``), the API's keys
(``apikeys``). The requests they bring go through ``services.requests.solicitations`` like any other."""
