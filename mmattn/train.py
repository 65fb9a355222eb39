"""`python -m mmattn.train` = `mmattn-train`."""

from mmattn.cli.train import main

if __name__ == "__main__":
    main()
