"""Progress of meta-training: a bar on a terminal or in a notebook, lines elsewhere.

``verbose=1`` shows a bar (``tqdm``, which skorch already depends on) when
standard error is a terminal or the code runs in a notebook, and otherwise
prints a line every 5 % of the run (a log file gets readable lines, not
carriage returns); ``verbose=2`` prints a line every meta-iteration. Each
shows the meta-iteration, the meta-loss, the last validation score, the
rate and the time left. Output that can no longer be written (a closed
pipe, ``| head``) ends the report, never the meta-training.
"""

import sys
import time


def _in_notebook():
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        return type(shell.get_ipython()).__name__ == "ZMQInteractiveShell"
    except Exception:
        return False


def _format_seconds(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{seconds:02d}"
    return f"{minutes:d}:{seconds:02d}"


class Progress:
    """Reports meta-training progress; does nothing at ``verbose=0``.

    Parameters
    ----------
    verbose : int
    start : int
        Meta-iterations already run (a warm start).
    total : int or None
        The meta-iteration at which the run ends by its budget (None: unknown).
    max_time : float or None
        Seconds after which the run ends.
    """

    def __init__(self, verbose, *, start, total, max_time=None):
        self.verbose = verbose
        self.start = start
        self.total = total
        self.max_time = max_time
        self.start_time = time.perf_counter()
        self.bar = None
        self.next_line = start
        self.last_printed = None
        self.last_score = None
        # no bar for a run of no meta-iteration (the pretrained MLP)
        if verbose == 1 and total != start and (_in_notebook() or sys.stderr.isatty()):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=None if total is None else total - start,
                            unit="it", desc="meta_fit", dynamic_ncols=True,
                            leave=True)

    def _write(self, report, *args):
        # a reader that went away must not fail (and so roll back) the run
        try:
            report(*args)
        except (OSError, ValueError):
            self.verbose, self.bar = 0, None

    def update(self, n_iter, loss, valid_score=None):
        """Report the state after meta-iteration ``n_iter``."""
        if self.verbose:
            self._write(self._update, n_iter, loss, valid_score)

    def _update(self, n_iter, loss, valid_score):
        if self.bar is not None:
            postfix = {"meta_loss": f"{loss:.4g}" if loss is not None else "-"}
            if valid_score is not None:
                postfix["valid"] = f"{valid_score:.4f}"
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(n_iter - self.start - self.bar.n)
            return
        if self.verbose == 1:
            step = max(1, (self.total - self.start) // 20) if self.total else 100
            if n_iter < self.next_line and n_iter != self.total:
                return
            self.next_line = n_iter + step
        self.last_printed, self.last_score = n_iter, valid_score
        print(self.line(n_iter, loss, valid_score), flush=True)

    def line(self, n_iter, loss, valid_score=None):
        """One line of progress: iteration, losses, rate and time left."""
        elapsed = time.perf_counter() - self.start_time
        done = n_iter - self.start
        rate = done / elapsed if elapsed > 0 else float("inf")
        parts = [f"Meta-iteration {n_iter}" + (f"/{self.total}" if self.total else "")]
        if loss is not None:
            parts.append(f"meta-loss = {loss:.6f}")
        if valid_score is not None:
            parts.append(f"validation score = {valid_score:.4f}")
        parts.append(f"{rate:.3g} it/s")
        left = self.time_left(n_iter, rate, elapsed)
        parts.append(f"elapsed {_format_seconds(elapsed)}"
                     + ("" if left is None else f", left {_format_seconds(left)}"))
        return ", ".join(parts)

    def time_left(self, n_iter, rate, elapsed):
        """Seconds left by the iteration budget or ``max_time``, whichever is less."""
        left = []
        if self.total is not None and rate > 0:
            left.append(max(0.0, (self.total - n_iter) / rate))
        if self.max_time is not None:
            left.append(max(0.0, self.max_time - elapsed))
        return min(left) if left else None

    def close(self, n_iter, loss, valid_score=None, note=None):
        """Report the final state (after the last validation) and end the bar;
        ``note``, a line of its own, says why the run stopped early."""
        if self.verbose:
            self._write(self._close, n_iter, loss, valid_score)
        if self.verbose and note:
            self._write(lambda line: print(line, flush=True), note)

    def _close(self, n_iter, loss, valid_score):
        if self.bar is not None:
            self._update(n_iter, loss, valid_score)
            self.bar.refresh()
            self.bar.close()
        elif ((self.last_printed != n_iter or valid_score != self.last_score)
              # a run of no meta-iteration has nothing to say but a score
              and (n_iter != self.start or valid_score is not None)):
            print(self.line(n_iter, loss, valid_score), flush=True)
