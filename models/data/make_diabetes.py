"""make_diabetes.py: writes diabetes_train.csv (352 rows) and diabetes_test.csv (90 rows) beside
itself, the data of models/diabetes_bnn.nn, from scikit-learn's copy of the diabetes data of
Efron, Hastie, Johnstone and Tibshirani (2004): 442 patients, 10 baseline measurements (age,
sex, body mass index, blood pressure and six blood serum values) and a measure of the
disease's progression one year later.  Needs Debian's python3-sklearn (the data ships inside
it; nothing is downloaded).  Run it with `/usr/bin/python3 models/data/make_diabetes.py`.

The rows are shuffled with a fixed seed and split 352 / 90 (80 / 20 %).  Each column, the
target included, is standardised with the training rows' mean and standard deviation, so
that priors of scale 1 are sensible; the test rows use the same statistics (printed, to undo
the scaling: progression = mean + sd x y).  Values are written with 7 significant digits."""
import os
import random

from sklearn.datasets import load_diabetes

HERE = os.path.dirname(os.path.abspath(__file__))

data = load_diabetes(scaled=False)
rows = [list(map(float, x)) + [float(y)] for x, y in zip(data.data, data.target)]
random.Random(2004).shuffle(rows)
train, test = rows[:352], rows[352:]
cols = len(rows[0])
mean = [sum(r[j] for r in train) / len(train) for j in range(cols)]
sd = [(sum((r[j] - mean[j]) ** 2 for r in train) / (len(train) - 1)) ** 0.5 for j in range(cols)]
for name, part in (("diabetes_train.csv", train), ("diabetes_test.csv", test)):
    with open(os.path.join(HERE, name), "w") as f:
        for r in part:
            f.write(",".join(f"{(r[j] - mean[j]) / sd[j]:.7g}" for j in range(cols)) + "\n")
print(f"target: progression = {mean[-1]:.4f} + {sd[-1]:.4f} x y")
