"""`python -m mmattn.transcribe` = `mmattn-transcribe`."""

from mmattn.cli.transcribe import main

if __name__ == "__main__":
    main()
