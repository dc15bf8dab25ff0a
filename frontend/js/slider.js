// The "Edge threshold" slider: a range input whose position maps to a value through a scale
// (select.js: kScale, number of edges kept; scoreScale, |score| threshold), both logarithmic.
// onInput(value) fires while it moves (the view follows live); onCommit(value) once it is released.
import { SLIDER_STEPS } from "./select.js";

export class ThresholdSlider {
  constructor(input, { onInput, onCommit }) {
    this.input = input;
    this.scale = null;
    this.value = 0;
    input.min = "0";
    input.max = String(SLIDER_STEPS);
    input.step = "1";
    input.addEventListener("input", () => { if (this.scale) this.moved(this.scale.toValue(+input.value), false); });
    input.addEventListener("change", () => onCommit(this.value));
    // arrows move one edge at a time (the log map has plateaus where a raw step changes nothing)
    input.addEventListener("keydown", (ev) => {
      const s = this.scale;
      if (!s) return;
      const dir = { ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1 }[ev.key];
      const jump = { PageUp: 1, PageDown: -1 }[ev.key];
      if (!dir && !jump && ev.key !== "Home" && ev.key !== "End") return;
      ev.preventDefault();
      let v = this.value;
      if (dir) v = s.step(v, dir);
      else if (jump) v = s.jump(v, jump);
      else v = ev.key === "Home" ? s.first : s.last;
      this.moved(v, true);
      clearTimeout(this.commitTimer);
      this.commitTimer = setTimeout(() => onCommit(this.value), 300);
    });
    this.onInput = onInput;
  }

  moved(v, setPosition) {
    if (setPosition) this.input.value = String(this.scale.toPos(v));
    this.input.setAttribute("aria-valuetext", this.scale.label(v));
    if (v === this.value) return;
    this.value = v;
    this.onInput(v);
  }

  /** A new scale (a new run, or another selection rule); enabled when it has anything to show. */
  setScale(scale) {
    this.scale = scale;
    this.input.disabled = !scale || scale.empty;
  }

  /** Put the slider at value v (clamped by the scale) without firing onInput. */
  set(v) {
    if (!this.scale) return;
    this.value = this.scale.clamp(v);
    this.input.value = String(this.scale.toPos(this.value));
    this.input.setAttribute("aria-valuetext", this.scale.label(this.value));
  }
}
