"""Using the winner: predicting on files (``python -m tuning.predict``) and serving it over HTTP."""
