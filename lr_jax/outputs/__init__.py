"""A run's output folder: checked before anything compiles, locked, and committed as one unit.

Every script (and `lr_jax.write_outputs`) holds its `--out` through an `OutputFolder`:

1. `open()` creates the folder and writes and removes a probe file, so a bad `--out` (an
   existing file, a read-only place) is refused in one line before any training, not after it.
2. It takes an exclusive `fcntl.flock` on `<out>/.lr_jax.lock` for the whole run. The kernel
   releases it when the process ends, however it ends, so there is no stale lock to time out and
   no heuristic: a second writer is refused at once, while the first still runs. A folder a
   run writes besides (its checkpoints) is held the same way by a `FolderLock`, and
   `--overwrite` never takes either from a live process.
3. It compares the configuration stored with the folder's results (the manifest
   `.lr_jax-run.json`; `summary.json`'s "config" for folders written before manifests existed)
   with this run's: the same configuration replaces its own results without asking (so a
   command stays re-runnable), a different one needs `overwrite`.
4. `staging()` yields a fresh folder inside `<out>`; the caller writes every file there, and
   only when all of them are written does the commit move them into place.

Why stage-then-rename rather than a manifest that readers check: the readers of `results.csv`
are people, pandas and spreadsheets, and none of them would check a manifest, so the files in
`<out>` themselves must always be one run's complete set. A folder cannot be renamed over
`<out>` (it holds the lock, the checkpoints, and what the user put there), so each file is
renamed on its own; to make the few renames one step, the staging folder is marked complete
(`.complete`, fsynced) before the first rename, and the next `open()` finishes the renames of a
complete staging folder that a kill interrupted (and deletes an incomplete one). A failure while
writing (a full disk) happens before the mark, so the previous set stays untouched. SIGINT is
held back during the renames themselves.

The package's modules, one idea each (each imports only those above it):

    paths     a folder path checked before anything runs: `check_given`, `check_writable` (a
              probe file), `remove_empty`
    locks     the `flock` of a run (`LOCK_NAME`), `FolderLock` and `held_here` (a folder held
              besides the output folder: the checkpoints), `check_free`
    commit    the commit's parts: `STAGING_PREFIX`, the completion mark, `MANIFEST_NAME`, the
              files staged, a synced write, SIGINT held during the renames
    identity  what a run computes, as JSON: `sweep_identity`
    folder    `OutputFolder`: checked, locked, compared with the results it holds (`RESULT_NAMES`;
              the differences by `lr_jax.io.json_differences`), committed as one unit
    write     `write_outputs`: a sweep's files into an `OutputFolder`, refused over another result

This face re-exports the names the rest of the repository uses; the submodules never import it.
Nothing here loads JAX (`sweep_identity` and `write_outputs` import `lr_jax.results` late).
"""

from lr_jax.outputs.commit import MANIFEST_NAME, STAGING_PREFIX
from lr_jax.outputs.folder import RESULT_NAMES, OutputFolder
from lr_jax.outputs.identity import sweep_identity
from lr_jax.outputs.locks import LOCK_NAME, FolderLock, check_free, held_here
from lr_jax.outputs.paths import check_given, check_writable, remove_empty
from lr_jax.outputs.write import write_outputs

__all__ = [
    "LOCK_NAME", "MANIFEST_NAME", "RESULT_NAMES", "STAGING_PREFIX", "FolderLock", "OutputFolder",
    "check_free", "check_given", "check_writable", "held_here", "remove_empty", "sweep_identity",
    "write_outputs",
]
