"""What block code raises to end its block's retries: a failure trying again cannot fix."""

from __future__ import annotations


class NotRetried(Exception):
    """Raise it in a `%%block` to fail the block at once, whatever `--retries` says:

        from kernel_magics import NotRetried

        if response.status_code == 401:
            raise NotRetried("the API key was rejected; retrying won't change that")

    The block fails with the message; errors raised as its cause (`raise ... from exc`) show in
    the traceback as usual.
    """
