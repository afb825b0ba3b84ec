"""Each seed's compatibility routes, one module per seed, on top of the kinds' submit
functions and the job services; kinds know nothing of any seed's JSON dialect."""
