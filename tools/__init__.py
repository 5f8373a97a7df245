"""Developer tools outside the installed package: they import it, never the other way round."""
