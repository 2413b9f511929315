"""Reading results files into tables, scaling estimates, the cost model, plots and reports.
Nothing here calls MPI: it runs on any machine that has the files."""
