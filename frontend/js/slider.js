// The "Edge threshold" slider: a range input on a log scale over the number of edges kept.
// onInput(k) fires while it moves (the view follows live); onCommit(k) once it is released.
import { SLIDER_STEPS, kToSlider, sliderToK, stepK } from "./select.js";

export class ThresholdSlider {
  constructor(input, { onInput, onCommit }) {
    this.input = input;
    this.kMax = 0;
    this.k = 0;
    input.min = "0";
    input.max = String(SLIDER_STEPS);
    input.step = "1";
    input.addEventListener("input", () => this.moved(sliderToK(+input.value, this.kMax), false));
    input.addEventListener("change", () => onCommit(this.k));
    // arrows move one edge at a time (the log map has plateaus where a raw step changes nothing)
    input.addEventListener("keydown", (ev) => {
      const dir = { ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1 }[ev.key];
      const jump = { PageUp: 1, PageDown: -1 }[ev.key];
      if (!dir && !jump && ev.key !== "Home" && ev.key !== "End") return;
      ev.preventDefault();
      let k = this.k;
      if (dir) k = stepK(k, dir, this.kMax);
      else if (jump) k = sliderToK(kToSlider(k, this.kMax) + jump * SLIDER_STEPS / 10, this.kMax);
      else k = ev.key === "Home" ? 1 : this.kMax;
      this.moved(k, true);
      clearTimeout(this.commitTimer);
      this.commitTimer = setTimeout(() => onCommit(this.k), 300);
    });
    this.onInput = onInput;
  }

  moved(k, setPosition) {
    if (setPosition) this.input.value = String(kToSlider(k, this.kMax));
    this.input.setAttribute("aria-valuetext", `${k} edges`);
    if (k === this.k) return;
    this.k = k;
    this.onInput(k);
  }

  /** New range (a new run): up to kMax edges; enabled when there is anything to show. */
  setRange(kMax) {
    this.kMax = kMax;
    this.input.disabled = kMax <= 0;
  }

  /** Put the slider at k without firing onInput. */
  set(k) {
    this.k = Math.min(Math.max(k, kMaxMin(this.kMax)), this.kMax);
    this.input.value = String(kToSlider(this.k, this.kMax));
    this.input.setAttribute("aria-valuetext", `${this.k} edges`);
  }
}

const kMaxMin = (kMax) => (kMax > 0 ? 1 : 0);
