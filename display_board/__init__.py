"""Hall screens: the browser board and the terminal board."""
