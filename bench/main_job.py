"""Time the README's main job as a user runs it: `transfer_nb compare` with every default (syn → mnist, scratch,
fine_tune and dann, 3 seeds, 10 labels per class), in a fresh folder. Records wall-clock seconds and the CPU seconds
of the command (user + system, all its threads) with the machine and library versions into bench/main_job.json,
which the README renders. Not a test: run it on an idle machine.

    python bench/main_job.py          # with the venv that has transfer_nb installed
"""
import json, os, platform, resource, subprocess, sys, tempfile, time
from importlib.metadata import version
from pathlib import Path

exe = Path(sys.executable).parent/'transfer_nb'
with tempfile.TemporaryDirectory() as d:
    t0 = time.time()
    r = subprocess.run([str(exe), 'compare'], cwd=d, capture_output=True, text=True)
    wall = time.time() - t0
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = (Path(d)/'report'/'report.md').exists()
if r.returncode != 0 or not report: sys.exit(f"the main job failed (exit {r.returncode}, report written: {report}):\n{r.stderr[-3000:]}")
out = dict(command='transfer_nb compare', wall_s=round(wall), cpu_s=round(use.ru_utime + use.ru_stime), cores=os.cpu_count(),
           machine=f"{os.cpu_count()}-core {platform.machine()} CPU" + (' (no GPU)' if not Path('/proc/driver/nvidia').exists() else ' and a GPU'),
           python=platform.python_version(), torch=version('torch'), fastai=version('fastai'), fastcore=version('fastcore'),
           date=time.strftime('%Y-%m-%d'))
(Path(__file__).parent/'main_job.json').write_text(json.dumps(out, indent=1) + '\n')
print(json.dumps(out, indent=1))
