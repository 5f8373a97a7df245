"""One-off scaffolding for a lent GPU machine (see README.md here): packing what it lacks, the
budgeted sweep check and the loop's profile. The benchmarks users run stay in bench/."""
