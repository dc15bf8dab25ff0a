// Pure: numbers that compare a circuit with another run or with a known circuit.

/** Ranks 1…n of `values` (ascending), ties sharing their average rank. */
export function ranks(values) {
  const order = values.map((v, i) => i).sort((a, b) => values[a] - values[b]);
  const r = new Array(values.length);
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && values[order[j + 1]] === values[order[i]]) j++;
    const avg = (i + j) / 2 + 1;
    for (let t = i; t <= j; t++) r[order[t]] = avg;
    i = j + 1;
  }
  return r;
}

/**
 * Spearman's rank correlation of two runs' scores over the edges both score: Pearson's r of the
 * ranks (average ranks on ties). a, b: Map name → score. {rho, n}; rho null when undefined (n < 2
 * or one side constant).
 */
export function spearman(a, b) {
  const names = [...a.keys()].filter((n) => b.has(n));
  const n = names.length;
  if (n < 2) return { rho: null, n };
  const ra = ranks(names.map((x) => a.get(x)));
  const rb = ranks(names.map((x) => b.get(x)));
  const mean = (n + 1) / 2;
  let sab = 0, saa = 0, sbb = 0;
  for (let i = 0; i < n; i++) {
    const da = ra[i] - mean, db = rb[i] - mean;
    sab += da * db; saa += da * da; sbb += db * db;
  }
  return { rho: saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : null, n };
}

/** Edges drawn in a comparison: in A only, in B only, in both (arrays of names, in input order). */
export function compareClasses(aNames, bNames) {
  const A = new Set(aNames), B = new Set(bNames);
  return {
    a: aNames.filter((x) => !B.has(x)),
    b: bNames.filter((x) => !A.has(x)),
    both: aNames.filter((x) => B.has(x)),
  };
}

/** |A ∩ B| / |A ∪ B| (null when both are empty). */
export function jaccard(aNames, bNames) {
  const c = compareClasses(aNames, bNames);
  const union = c.a.length + c.b.length + c.both.length;
  return union ? c.both.length / union : null;
}

/** Precision and recall of the shown edges against a known circuit (a Set of names). */
export function precisionRecall(shownNames, truth) {
  const tp = shownNames.filter((x) => truth.has(x)).length;
  return {
    tp,
    precision: shownNames.length ? tp / shownNames.length : null,
    recall: truth.size ? tp / truth.size : null,
  };
}

/**
 * ROC of ranking edges by |score| against a known circuit, as edgewise.evaluate.roc_auc computes it:
 * |score| below noiseFloor × max counts as 0, tied scores form one diagonal step (a tie counts half),
 * AUC by the trapezoid. edges: [{name, score}] (every edge of the run); truth: Set of names.
 * Returns {fpr, tpr, auc, nPos, nNeg}; null when either class is empty.
 */
export function roc(edges, truth, noiseFloor = 1e-6) {
  const abs = edges.map((e) => Math.abs(e.score));
  const max = abs.reduce((m, x) => Math.max(m, x), 0);
  const s = abs.map((x) => (max > 0 && x < noiseFloor * max ? 0 : x));
  const pos = edges.map((e) => truth.has(e.name));
  const nPos = pos.filter(Boolean).length, nNeg = pos.length - nPos;
  if (nPos === 0 || nNeg === 0) return null;
  const order = s.map((x, i) => i).sort((a, b) => s[b] - s[a]);
  const fpr = [0], tpr = [0];
  let tp = 0, fp = 0, auc = 0;
  for (let i = 0; i < order.length;) {
    let j = i;
    for (; j < order.length && s[order[j]] === s[order[i]]; j++) {
      if (pos[order[j]]) tp++; else fp++;
    }
    const x = fp / nNeg, y = tp / nPos;
    auc += (x - fpr[fpr.length - 1]) * (y + tpr[tpr.length - 1]) / 2;
    fpr.push(x);
    tpr.push(y);
    i = j;
  }
  return { fpr, tpr, auc, nPos, nNeg };
}
