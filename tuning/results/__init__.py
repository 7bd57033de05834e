"""What a finished run leaves: trials table, results files, report, plots, comparisons."""
