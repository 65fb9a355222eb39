"""`python -m mmattn.viz` = `mmattn-viz`."""

from mmattn.cli.viz import main

if __name__ == "__main__":
    main()
