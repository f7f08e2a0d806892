"""A saved model and its predictions under hostile input: nothing lost, one line, no traceback.

`experiments.predict` never writes over its own inputs (the data file, the model folder), a bad
--out or a damaged model folder is one `error:` line, a NaN in a data file is named by file, row
and column, and `lr_sweep` keeps a finished sweep's results when the refit after it fails.

Cheap: the saved model is built by hand (`TrainedModel` of a built-in MLP at its initial
parameters), not trained; the scripts' `main` runs in-process; lr_sweep's engine and refit are
replaced by fakes. Only the prediction's forward pass compiles.
"""

import dataclasses
import json
import os
import shutil
from types import SimpleNamespace

import jax
import numpy as np
import pytest
from absl import flags

import lr_jax
from lr_jax import engine, export
from lr_jax.io import jsonable

from outputs_test import fake_result  # tests/ is on sys.path under pytest

NAMES = ("cat", "dog", "fish")
FEATURES = ("a", "b", "c", "d")


def _trained(hidden=(8,)) -> export.TrainedModel:
  """A built-in MLP on 4 features and 3 classes, two ensemble members: no training."""
  cfg = lr_jax.ModelConfig(hidden=hidden)
  model = lr_jax.build_model(cfg, len(NAMES), (len(FEATURES),))
  params = tuple(model.init(jax.random.PRNGKey(s)) for s in (0, 1))
  mean, std = np.arange(4, dtype=np.float32), np.full(4, 2.0, np.float32)
  card = {"format": export.FORMAT, "experiment": {"model": jsonable(dataclasses.asdict(cfg))},
          "user_model": None, "task": "classification", "feature_shape": [len(FEATURES)],
          "feature_names": list(FEATURES), "label_column": "kind", "class_names": list(NAMES),
          "standardization": {"mean": mean.tolist(), "std": std.tolist()}}
  return export.TrainedModel(model=model, params=params, mean=mean, std=std,
                             task="classification", class_names=NAMES, feature_names=FEATURES,
                             feature_shape=(len(FEATURES),), card=card)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """(folder of a saved model, folder of another architecture's, its TrainedModel)."""
  tmp = tmp_path_factory.mktemp("models")
  model = _trained()
  export.save_model(model, str(tmp / "model"))
  export.save_model(_trained(hidden=(16,)), str(tmp / "wider"))
  return str(tmp / "model"), str(tmp / "wider"), model


def _data(folder, text=None, name="data.csv"):
  path = os.path.join(folder, name)
  with open(path, "w") as f:
    f.write(text or "a,b,c,d,kind\n1,2,3,4,cat\n5,6,7,8,dog\n0,1,0,1,fish\n")
  return path


def _snapshot(folder):
  return {n: open(os.path.join(folder, n), "rb").read() for n in sorted(os.listdir(folder))
          if os.path.isfile(os.path.join(folder, n))}


def _error_line(code, err):
  lines = err.strip().splitlines()
  assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
  return lines[0]


# ----------------------------------------------------------------------------- --out


@pytest.mark.parametrize("target", ["dataset", "dataset_symlink", "params.msgpack", "model.json",
                                    "params_hardlink", "model_folder", "new_file_in_model"])
def test_predict_refuses_an_out_that_is_one_of_its_inputs_and_keeps_them(predict, saved,
                                                                         tmp_path, target):
  model_dir, _, _ = saved
  model = str(tmp_path / "model")
  shutil.copytree(model_dir, model)
  data = _data(str(tmp_path))
  out = {"dataset": data, "params.msgpack": os.path.join(model, "params.msgpack"),
         "model.json": os.path.join(model, "model.json"), "model_folder": model,
         "new_file_in_model": os.path.join(model, "preds.csv")}.get(target)
  if target == "dataset_symlink":
    out = str(tmp_path / "link.csv")
    os.symlink(data, out)
  if target == "params_hardlink":
    out = str(tmp_path / "hard.csv")
    os.link(os.path.join(model, "params.msgpack"), out)
  data_before, model_before = open(data, "rb").read(), _snapshot(model)
  line = _error_line(*predict(f"--model={model}", f"--dataset={data}", f"--out={out}"))
  assert f"--out {out}" in line, line
  assert ("--dataset" in line) if "dataset" in target else ("--model folder" in line), line
  assert open(data, "rb").read() == data_before
  assert _snapshot(model) == model_before
  lr_jax.load_model(model)  # Still whole.


def test_predict_refuses_an_out_that_is_a_folder_or_under_a_file(predict, saved, tmp_path):
  model, _, _ = saved
  data = _data(str(tmp_path))
  folder = tmp_path / "preds"
  folder.mkdir()
  for out, needle in ((str(folder), "is a folder"), (str(tmp_path / "new") + "/", "is a folder"),
                      (os.path.join(data, "preds.csv"), f"{data} is a file, not a folder")):
    line = _error_line(*predict(f"--model={model}", f"--dataset={data}", f"--out={out}"))
    assert f"--out {out}" in line and needle in line, line
  assert os.listdir(folder) == [] and not (tmp_path / "new").exists()
  # Missing folders above a file path are created, as for every --out.
  out = tmp_path / "new" / "sub" / "preds.csv"
  assert predict(f"--model={model}", f"--dataset={data}", f"--out={out}") == (0, "")
  assert out.read_text().splitlines()[0] == "prediction,p_cat,p_dog,p_fish"


# ----------------------------------------------------------------------------- the model folder


def _damage(model_dir, wider_dir, tmp_path, how):
  folder = str(tmp_path / how)
  shutil.copytree(model_dir, folder)
  params, card_path = os.path.join(folder, "params.msgpack"), os.path.join(folder, "model.json")
  card = json.load(open(card_path))
  if how == "truncated":
    blob = open(params, "rb").read()
    open(params, "wb").write(blob[:len(blob) // 2])
  elif how == "empty_params":
    open(params, "wb").close()
  elif how == "swapped":
    shutil.copy(os.path.join(wider_dir, "params.msgpack"), params)
  elif how == "not_msgpack_members":
    from flax import serialization
    open(params, "wb").write(serialization.msgpack_serialize({"weights": np.zeros(3)}))
  elif how == "not_json":
    open(card_path, "w").write('{"format": "lr_jax.model/1", "task": ')
  elif how in ("unknown_model", "dropout_out_of_range"):  # The configs know no registry.
    card["experiment"]["model"].update(
        {"name": "transformer"} if how == "unknown_model" else {"dropout": 1.5})
    json.dump(card, open(card_path, "w"))
  else:  # lacks_<key>
    key = how.removeprefix("lacks_")
    del card[key]
    json.dump(card, open(card_path, "w"))
  return folder


DAMAGE = [
    ("truncated", "params.msgpack is truncated"),
    ("empty_params", "params.msgpack is truncated"),
    ("swapped", "params.msgpack does not match model.json's architecture (member 0): expected "
                "shape (8,) for Dense_0/bias, found (16,)"),
    ("not_msgpack_members", "params.msgpack holds no ensemble members"),
    ("not_json", "model.json is not JSON"),
    ("unknown_model", "model configuration is invalid (unknown model 'transformer'; valid "
                      "choices: mlp, linear, cnn)"),
    ("dropout_out_of_range", "model configuration is invalid (dropout 1.5 is outside its valid "
                             "range [0, 1))"),
    ("lacks_task", "model.json lacks 'task'"),
    ("lacks_standardization", "model.json lacks 'standardization'"),
    ("lacks_experiment", "model.json lacks 'experiment'"),
    ("lacks_feature_names", "model.json lacks 'feature_names'"),
]


@pytest.mark.parametrize("how,needle", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_a_damaged_model_folder_is_one_line_naming_the_folder_and_the_problem(
    predict, saved, tmp_path, how, needle):
  model_dir, wider_dir, _ = saved
  folder = _damage(model_dir, wider_dir, tmp_path, how)
  with pytest.raises(lr_jax.ConfigError) as e:
    lr_jax.load_model(folder)
  message = str(e.value)
  assert "\n" not in message
  assert message.startswith(f"{folder!r} is not a valid lr_jax model folder: "), message
  assert needle in message, message
  data, out = _data(str(tmp_path)), tmp_path / "preds.csv"
  line = _error_line(*predict(f"--model={folder}", f"--dataset={data}", f"--out={out}"))
  assert line == f"error: {message}"
  assert not out.exists()


# ----------------------------------------------------------------------------- the data file


def test_a_nan_or_inf_in_a_predict_file_names_the_file_the_row_and_the_column(predict, saved,
                                                                                tmp_path):
  model, _, trained = saved
  out = tmp_path / "preds.csv"
  cases = [  # (file text, what the line names); row 2 is the file's third line, a blank skipped.
      ("a,b,c,d\n1,2,3,4\n\n5,6,nan,8\n1,1,1,1\n", ["'nan'", "column 'c'", "data row 2 (line 4)"]),
      ("a,b,c,d\n1,inf,3,4\n", ["'inf'", "column 'b'", "data row 1 (line 2)"]),
      ("a,b,c,d,kind\n1,2,3,4,cat\n1,2,3,-1e39,dog\n",
       ["'-1e39'", "beyond float32's range", "column 'd'", "data row 2 (line 3)"]),
  ]
  for i, (text, needles) in enumerate(cases):
    data = _data(str(tmp_path), text, name=f"bad{i}.csv")
    with pytest.raises(lr_jax.ConfigError) as e:
      export.read_features(data, trained)
    for needle in [repr(data), *needles]:
      assert needle in str(e.value), (needle, str(e.value))
    line = _error_line(*predict(f"--model={model}", f"--dataset={data}", f"--out={out}"))
    assert line == f"error: {e.value}"
  x = np.ones((3, 4))
  x[2, 1] = np.nan
  data = str(tmp_path / "bad.npz")
  np.savez(data, x=x)
  line = _error_line(*predict(f"--model={model}", f"--dataset={data}", f"--out={out}"))
  for needle in [repr(data), "NaN", "row 3, column 2 ('b')", "x[2, 1]"]:
    assert needle in line, (needle, line)
  assert not out.exists()


# ----------------------------------------------------------------------------- lr_sweep's refit


def test_a_refit_that_fails_after_the_sweep_keeps_the_sweeps_results(monkeypatch, capsys,
                                                                     caplog, saved, tmp_path):
  from experiments import lr_sweep
  _, _, trained = saved
  monkeypatch.setattr(engine, "run_planned",
                      lambda groups, grid, **kwargs: fake_result(grid.learning_rates))
  out, model = tmp_path / "out", tmp_path / "model"

  def run():
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["lr_sweep", "--train_size=100", "--epochs=2", "--lrs=0.1,0.3", "--seeds=1",
                 "--noreport", f"--out={out}", f"--save_model={model}"])
    code = 0
    try:
      lr_sweep.main(["lr_sweep"])
    except SystemExit as e:
      code = e.code
    finally:
      flags.FLAGS.unparse_flags()
    return code, capsys.readouterr().err

  def diverged(result, group=None):  # What export.refit raises when every refit run diverged.
    raise lr_jax.ConfigError("every refit run diverged (lr 0.3, 2 epochs on all the sweep's "
                             "rows); nothing to export")

  # No earlier model: the results are written, the model folder is not left behind.
  monkeypatch.setattr(export, "refit", diverged)
  with caplog.at_level("ERROR"):
    code, err = run()
  assert {"results.csv", "history.npz", "summary.json"} <= set(os.listdir(out)), err
  assert "0.3" in (out / "results.csv").read_text()
  assert not model.exists()
  line = _error_line(code, err)
  assert line == (f"error: the refit failed: every refit run diverged (lr 0.3, 2 epochs on all "
                  f"the sweep's rows); nothing to export; the sweep's results are written into "
                  f"{out}, nothing saved in --save_model {model}")
  assert line.removeprefix("error: ") in caplog.text

  # A refit that works saves its model beside the results; a failing one later keeps it whole.
  monkeypatch.setattr(export, "refit", lambda result, group=None: trained)
  assert run() == (0, "")
  saved_model = _snapshot(str(model))
  assert {"params.msgpack", "model.json"} <= set(saved_model)
  (out / "results.csv").unlink()
  monkeypatch.setattr(export, "refit", diverged)
  assert "the sweep's results are written into" in _error_line(*run())
  assert (out / "results.csv").exists()
  assert _snapshot(str(model)) == saved_model
  assert not [n for n in os.listdir(model) if n.startswith(".staging")]


def test_the_refit_line_gives_the_validation_scores_n():
  best = SimpleNamespace(higher_is_better=True, mean=0.9, n=3)
  est = export.estimate_of(best, "best", 4, {"n": 30, "accuracy": 0.85, "loss": 0.4}, 0, 120)
  assert est["line"].startswith("validation accuracy 0.9000 (n=3 runs; best of 4 points, "
                                "optimistic) vs test 0.8500 (n=30; refit on 120 rows)"), est
  assert est["validation_n"] == 3
  one = export.estimate_of(SimpleNamespace(higher_is_better=False, mean=0.2, n=1), "one_se", 1,
                           None, 0, 50)
  assert one["line"].startswith("validation loss 0.2000 (n=1 run; rule one_se of 1 point"), one


# ----------------------------------------------------------------------------- the API


@pytest.mark.parametrize("thing", ["result", "text", "card"])
def test_save_model_of_something_else_is_one_clear_type_error(saved, tmp_path, thing):
  obj = {"result": fake_result(), "text": "runs/model", "card": saved[2].card}[thing]
  with pytest.raises(TypeError) as e:
    export.save_model(obj, str(tmp_path / "m"))
  message = str(e.value)
  assert "\n" not in message and "TrainedModel" in message
  assert type(obj).__name__ in message, message
  assert not (tmp_path / "m").exists()


# ----------------------------------------------------------------------------- read_features


def test_a_predict_csv_naming_a_column_twice_is_refused_not_read_by_its_first(predict, saved,
                                                                              tmp_path):
  model, _, trained = saved
  data = _data(str(tmp_path), "a,a,b,c,d\n1,9,2,3,4\n5,9,6,7,8\n", name="twice.csv")
  with pytest.raises(lr_jax.ConfigError) as e:
    export.read_features(data, trained)
  message = str(e.value)
  assert "\n" not in message and repr(data) in message and "'a' (columns 1, 2)" in message, message
  out = tmp_path / "preds.csv"
  assert _error_line(*predict(f"--model={model}", f"--dataset={data}", f"--out={out}")) == (
      f"error: {message}")
  assert not out.exists()


@pytest.mark.parametrize("name", ["folder.csv", "folder.npz"])
def test_a_folder_given_as_the_predict_file_is_called_a_folder_not_missing(predict, saved,
                                                                           tmp_path, name):
  model, _, trained = saved
  folder = tmp_path / name
  folder.mkdir()
  with pytest.raises(lr_jax.ConfigError) as e:
    export.read_features(str(folder), trained)
  message = str(e.value)
  assert "\n" not in message and repr(str(folder)) in message, message
  assert "is a directory" in message and "does not exist" not in message, message
  out = tmp_path / "preds.csv"
  assert _error_line(*predict(f"--model={model}", f"--dataset={folder}", f"--out={out}")) == (
      f"error: {message}")
  assert not out.exists()


def _npz_member_not_an_array(path):
  """A zip whose x.npy entry is raw bytes, not a .npy array (numpy hands those back as bytes)."""
  import zipfile
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("x.npy", b"these are not the bytes of an array")


@pytest.mark.parametrize("how,needle", [
    ("random_bytes", "is not a valid .npz archive (not a zip file)"),
    ("pickle_bytes", "is not a valid .npz archive (not a zip file)"),
    ("member_not_an_array", "is not a valid .npz archive (its 'x' is not a .npy array)"),
    ("single_npy", "holds a single array, not a .npz archive"),
])
def test_a_predict_npz_that_is_not_an_archive_of_arrays_is_one_line_without_pickle_advice(
    predict, saved, tmp_path, how, needle):
  model, _, trained = saved
  data = str(tmp_path / f"{how}.npz")
  if how == "random_bytes":
    open(data, "wb").write(np.random.default_rng(0).bytes(256))
  elif how == "pickle_bytes":  # What numpy would unpickle, given allow_pickle=True.
    import pickle
    open(data, "wb").write(pickle.dumps({"x": [1, 2, 3, 4]}))
  elif how == "member_not_an_array":
    _npz_member_not_an_array(data)
  else:
    with open(data, "wb") as f:
      np.save(f, np.ones((3, 4)))
  with pytest.raises(lr_jax.ConfigError) as e:
    export.read_features(data, trained)
  message = str(e.value)
  assert "\n" not in message and repr(data) in message and needle in message, message
  assert "allow_pickle" not in message, message
  out = tmp_path / "preds.csv"
  line = _error_line(*predict(f"--model={model}", f"--dataset={data}", f"--out={out}"))
  assert line == f"error: {message}" and "allow_pickle" not in line
  assert not out.exists()


@pytest.mark.parametrize("ext", [".npz", ".csv"])
def test_only_an_unreadable_predict_file_is_called_unreadable(monkeypatch, saved, tmp_path, ext):
  import errno
  _, _, trained = saved
  if ext == ".csv":
    data = _data(str(tmp_path), "a,b,c,d\n1,2,3,4\n")
  else:
    data = str(tmp_path / "data.npz")
    np.savez(data, x=np.ones((2, 4)))
  import builtins
  real_open, real_load = builtins.open, np.load

  def failing(code):
    def fail(path, *args, **kwargs):
      if os.fspath(path) == data:
        raise OSError(code, os.strerror(code), data)
      return (real_load if ext == ".npz" else real_open)(path, *args, **kwargs)
    return fail

  for code, needle in ((errno.EINVAL, f"data file {data!r} is not a valid"),  # Malformed.
                       (errno.EACCES, f"cannot read {data!r}: Permission denied"),
                       (errno.EIO, f"cannot read {data!r}: Input/output error")):
    if ext == ".npz":
      monkeypatch.setattr(np, "load", failing(code))
    else:
      monkeypatch.setattr(export.predict, "open", failing(code), raising=False)
    with pytest.raises(lr_jax.ConfigError) as e:
      export.read_features(data, trained)
    message = str(e.value)
    assert "\n" not in message and message.startswith(needle), (code, message)
    assert code != errno.EINVAL or "cannot read" not in message, message


# ----------------------------------------------------------------------------- write_outputs


@pytest.mark.parametrize("thing", ["dict", "path", "namespace"])
def test_write_outputs_of_something_else_is_one_clear_type_error_touching_nothing(tmp_path,
                                                                                  thing):
  obj = {"dict": {"rows": {}, "config": {}}, "path": "runs/sweep",
         "namespace": SimpleNamespace(config={}, rows={}, history={})}[thing]
  out = tmp_path / "out"
  with pytest.raises(TypeError) as e:
    lr_jax.write_outputs(obj, str(out))
  kind = type(obj)
  assert str(e.value) == ("write_outputs takes a SweepResult (from lr_jax.run_sweep), got "
                          f"{kind.__module__}.{kind.__qualname__}")
  assert not out.exists()


def test_write_outputs_keeps_a_different_results_files_of_the_same_configuration(tmp_path):
  import outputs_test
  out = str(tmp_path / "out")
  first = fake_result((0.01, 0.1))
  lr_jax.write_outputs(first, out)
  before = outputs_test._snapshot(out)
  # The same result again (new timings, e.g. a rerun's) replaces its own files without asking.
  again = dataclasses.replace(first, timings=[{"compile_s": 1.0, "run_s": 2.0}])
  lr_jax.write_outputs(again, out)
  assert outputs_test._snapshot(out)["results.csv"] == before["results.csv"]
  before = outputs_test._snapshot(out)
  # The same configuration (e.g. other in-memory data of the same name), other numbers.
  other_rows = fake_result((0.01, 0.1))
  other_rows.rows["best_val_accuracy"] = np.array([0.2, 0.3])
  other_history = fake_result((0.01, 0.1))
  other_history.history["val_loss"] = other_history.history["val_loss"] + 1
  for other, what in ((other_rows, "results.csv"), (other_history, "history.npz")):
    assert other.config == first.config
    with pytest.raises(lr_jax.ConfigError) as e:
      lr_jax.write_outputs(other, out)
    message = str(e.value)
    assert message == (f"out_dir {out} holds a different result of the same sweep configuration "
                       f"(its {what} differs); pass overwrite=True to replace it, or give "
                       "another out_dir"), message
    assert outputs_test._snapshot(out) == before
  lr_jax.write_outputs(other_rows, out, overwrite=True)
  assert "0.2" in open(os.path.join(out, "results.csv")).read()
  lr_jax.write_outputs(other_rows, out)  # Now its own.
