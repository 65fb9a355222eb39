"""`python -m mmattn.predict` = `mmattn-predict`."""

from mmattn.cli.predict import main

if __name__ == "__main__":
    main()
