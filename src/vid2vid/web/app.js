// The page: reads /api/info, sends the form to /api/jobs, follows the job until its video is ready.
"use strict";

const $ = (id) => document.getElementById(id);
let info = null;

function checked(name) {
  return document.querySelector(`input[name="${name}"]:checked`).value;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function answer(response) {
  // Every answer of the API is JSON; anything else (a proxy's page, a crash) becomes a plain message.
  try {
    return await response.json();
  } catch {
    return { error: `the server answered ${response.status} ${response.statusText}` };
  }
}

async function load(model) {
  const query = model ? `?model=${encodeURIComponent(model)}` : "";
  try {
    info = await answer(await fetch(`/api/info${query}`));
  } catch {
    $("model").textContent = "The server does not answer.";
    return;
  }
  if (info.error) {
    $("model").textContent = `The server cannot describe its model: ${info.error}`;
    return;
  }
  const trained = info.trained_iterations ? `, trained ${info.trained_iterations} iterations` : "";
  $("model").textContent = `${info.model} (${info.task} labels) from ${info.checkpoint}${trained}; ` +
    `runs on ${info.device}.`;
  // Several models: a picker, the form rebuilt for the one picked.
  $("model-box").hidden = info.models.length < 2;
  if (!$("model-choice").options.length) {
    for (const m of info.models) $("model-choice").append(new Option(`${m.name} (${m.task})`, m.name));
  }
  $("model-choice").value = info.name;
  $("references-box").hidden = !info.few_shot;
  $("k").max = info.limits.max_references;
  $("finetune-box").hidden = !info.limits.max_finetune_steps;
  $("finetune-steps").max = info.limits.max_finetune_steps;
  $("finetune-steps").value = Math.min(100, info.limits.max_finetune_steps);
  $("frames").max = info.limits.max_frames;
  $("frames").value = Math.min(32, info.limits.max_frames);
  $("label-hint").textContent = info.label_file
    ? `Images with their ${info.label_file} files (same name, .json) use those labels; others are labelled by ` +
      "the detector."
    : "";
  const nouns = { street: "street sequence", face: "talking face", pose: "motion" };
  $("motion-noun").textContent = nouns[info.task] || "motion";
  if (info.task === "street") {
    $("driving-legend").textContent = "Scene: the driving label maps";
    $("driving-hint").textContent = "A video here is a colour-coded label video (Cityscapes colours); a " +
      "prepared folder holds seg_maps/ (vid2vid prepare --label-colours, or vid2vid synth street).";
  }
  $("identities").replaceChildren();
  for (const index of info.builtin.identities) {
    const tile = document.createElement("label");
    tile.innerHTML = `<input type="radio" name="identity" value="${index}"><img alt="identity ${index}" ` +
      `src="/api/builtin/${index}.png?model=${encodeURIComponent(info.name)}">${index}`;
    $("identities").append(tile);
  }
  const first = document.querySelector('input[name="identity"]');
  if (first) first.checked = true;
  $("motion").replaceChildren();
  for (const index of info.builtin.motions) {
    $("motion").append(new Option(`${nouns[info.task] || "motion"} ${index}`, index));
  }
  $("size").replaceChildren();
  for (const [h, w] of info.sizes) {
    const option = new Option(`${h}×${w}`, `${h}x${w}`);
    option.selected = h === info.size[0] && w === info.size[1];
    $("size").append(option);
  }
  $("generate").disabled = false;
  if (typeof offerLive === "function") offerLive();
}

function formData() {
  const form = new FormData();
  form.append("model", info.name);
  form.append("size", $("size").value);
  form.append("frames", $("frames").value);
  if (info.few_shot) {
    if (checked("ref-source") === "builtin") {
      form.append("identity", checked("identity"));
      form.append("k", $("k").value);
    } else {
      for (const file of $("references").files) form.append("references", file);
    }
    if ($("finetune").checked) form.append("finetune", $("finetune-steps").value);
  }
  const source = checked("drive-source");
  if (source === "builtin") {
    form.append("motion", $("motion").value);
  } else if (source === "file") {
    for (const file of $("driving").files) form.append("driving", file);
  } else {
    for (const file of $("driving-folder").files) {
      form.append("driving_folder", file, file.webkitRelativePath || file.name);
    }
  }
  return form;
}

function tooLarge(form) {
  let bytes = 0;
  for (const value of form.values()) if (value instanceof File) bytes += value.size;
  return bytes > info.limits.max_upload_mb * 2 ** 20;
}

async function submit(event) {
  event.preventDefault();
  showError("");
  $("result").hidden = true;
  const form = formData();
  if (tooLarge(form)) {
    showError(`The files are larger than this server takes (${info.limits.max_upload_mb} MB).`);
    return;
  }
  $("generate").disabled = true;
  $("status").hidden = false;
  $("status-text").textContent = "Uploading…";
  $("progress").removeAttribute("value");
  try {
    const response = await fetch("/api/jobs", { method: "POST", body: form });
    const job = await answer(response);
    if (!response.ok) throw new Error(job.error);
    await follow(job.id);
  } catch (error) {
    $("status").hidden = true;
    showError(error.message || String(error));
  } finally {
    $("generate").disabled = false;
  }
}

// The job this page follows: cancelled with the button, or when the page goes away (it would render on for
// nobody otherwise).
let current = null;

function cancelCurrent() {
  if (current) navigator.sendBeacon(`/api/jobs/${current}/cancel`);
}

async function follow(id) {
  current = id;
  try {
    await followUntilEnd(id);
  } finally {
    current = null;
  }
}

async function followUntilEnd(id) {
  for (;;) {
    const response = await fetch(`/api/jobs/${id}`);
    const job = await answer(response);
    if (!response.ok) throw new Error(job.error);
    if (job.state === "cancelled") {
      throw new Error("Cancelled.");
    } else if (job.cancelling) {
      $("status-text").textContent = "Cancelling…";
    } else if (job.state === "queued") {
      const ahead = job.ahead || 0;
      $("status-text").textContent = `Waiting in the queue: ${ahead} job${ahead === 1 ? "" : "s"} ahead.`;
      $("progress").removeAttribute("value");
    } else if (job.state === "running" && job.phase === "finetune") {
      $("status-text").textContent = job.total
        ? `Fine-tuning on the references: ${job.done} / ${job.total} steps.`
        : "Preparing the references for fine-tuning…";
      $("progress").value = job.total ? job.done / job.total : 0;
    } else if (job.state === "running") {
      $("status-text").textContent = job.total
        ? `Rendering: ${job.done} / ${job.total} frames, ${job.fps.toFixed(1)} frames/s.`
        : "Preparing the inputs…";
      $("progress").value = job.total ? job.done / job.total : 0;
    } else if (job.state === "failed") {
      throw new Error(job.message);
    } else {
      $("status-text").textContent = `Done: ${job.done} frames in ${(job.done / Math.max(job.fps, 1e-9)).toFixed(1)} s ` +
        `(${job.fps.toFixed(1)} frames/s).`;
      $("progress").value = 1;
      show(job);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

function show(job) {
  $("result-video").src = job.result;
  $("labels-video").src = job.labels;
  $("download").href = job.result;
  $("result-references").replaceChildren(...job.references.map((src, i) => {
    const image = new Image();
    image.src = src;
    image.alt = `reference ${i + 1}`;
    return image;
  }));
  $("references-figure").hidden = job.references.length === 0;
  $("result").hidden = false;
  $("result-video").play().catch(() => {});
}

// The labels play in step with the result.
$("result-video").addEventListener("play", () => {
  $("labels-video").currentTime = $("result-video").currentTime;
  $("labels-video").play().catch(() => {});
});
$("result-video").addEventListener("pause", () => $("labels-video").pause());
$("result-video").addEventListener("seeked", () => {
  $("labels-video").currentTime = $("result-video").currentTime;
});
$("job").addEventListener("submit", submit);
$("model-choice").addEventListener("change", () => load($("model-choice").value));
$("cancel").addEventListener("click", async () => {
  if (!current) return;
  $("cancel").disabled = true;
  try {
    await fetch(`/api/jobs/${current}/cancel`, { method: "POST" });
  } finally {
    $("cancel").disabled = false;
  }
});
window.addEventListener("pagehide", cancelCurrent);
// Choosing a file picks its source.
$("references").addEventListener("change", () => { document.querySelector('input[name="ref-source"][value="upload"]').checked = true; });
$("driving").addEventListener("change", () => { document.querySelector('input[name="drive-source"][value="file"]').checked = true; });
$("driving-folder").addEventListener("change", () => { document.querySelector('input[name="drive-source"][value="folder"]').checked = true; });
load();
