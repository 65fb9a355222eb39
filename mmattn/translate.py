"""`python -m mmattn.translate` = `mmattn-translate`."""

from mmattn.cli.translate import main

if __name__ == "__main__":
    main()
