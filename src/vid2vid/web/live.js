// Live mode: camera frames go to /api/live over a WebSocket and their results come back, shown beside the camera.
// At most two frames are out at once: a frame is sent when one has come back (or the server dropped it), so frames
// never pile up on the way. Uses app.js's $, info, checked and showError.
"use strict";

const MAX_IN_FLIGHT = 2;
const SEND_WIDTH = 320; // the detector needs no more; small JPEGs travel fast
const live = { socket: null, stream: null, timer: null, seq: 0, sent: new Map(), had: 0, error: "" };
// What the page has shown, for people and for the browser test: results in order, latencies, notices.
window.liveStats = { results: [], latencies: [], noPerson: 0, shownAt: [], server: null };

function setLiveStatus(text) {
  $("live-status").textContent = text;
}

function liveError(message) {
  live.error = message;
  showError(message);
  stopLive();
  setLiveStatus("");
}

function cameraProblem(error) {
  if (error.name === "NotAllowedError" || error.name === "SecurityError") {
    return "The camera was refused: allow this page to use it (the camera icon in the address bar), then start again.";
  }
  if (error.name === "NotFoundError" || error.name === "OverconstrainedError") {
    return "No camera was found: connect one, or use `vid2vid live VIDEO` on the command line.";
  }
  if (error.name === "NotReadableError") {
    return "The camera is in use by another program (or another tab): close it, then start again.";
  }
  return `The camera could not be started: ${error.message || error.name}`;
}

function startRequest() {
  // Which references: the choice made under 1; a photo goes after the request, as one binary message.
  const request = { model: info.name };
  let photo = null;
  if (info.few_shot) {
    if (checked("ref-source") === "builtin") {
      request.identity = Number(checked("identity"));
      request.k = Number($("k").value);
    } else {
      photo = [...$("references").files].find((file) => file.type.startsWith("image/")) || null;
      if (!photo) throw new Error("Choose a photo under 1 (My images), or a built-in identity.");
      request.upload = true;
    }
    if ($("finetune").checked && info.limits.max_finetune_steps) request.finetune = Number($("finetune-steps").value);
  }
  return { request, photo };
}

async function startLive() {
  showError("");
  live.error = "";
  let choice;
  try {
    choice = startRequest();
  } catch (error) {
    showError(error.message);
    return;
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    liveError("This browser offers no camera to this page (pages get one on https:// or http://localhost).");
    return;
  }
  $("live-start").disabled = true;
  setLiveStatus("Asking for the camera…");
  try {
    live.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (error) {
    $("live-start").disabled = false;
    liveError(cameraProblem(error));
    return;
  }
  $("live-camera").srcObject = live.stream;
  $("live-camera").play().catch(() => {});
  $("live-view").hidden = false;
  $("live-stop").hidden = false;
  $("live-start").hidden = true;
  window.liveStats = { results: [], latencies: [], noPerson: 0, shownAt: [], server: null };
  live.seq = 0;
  live.had = 0;
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/live`);
  socket.binaryType = "arraybuffer";
  live.socket = socket;
  socket.onopen = async () => {
    socket.send(JSON.stringify(choice.request));
    if (choice.photo) socket.send(await choice.photo.arrayBuffer());
    setLiveStatus("Preparing the references…");
  };
  socket.onmessage = (event) => {
    if (typeof event.data !== "string") {
      showLiveResult(event.data);
      return;
    }
    const message = JSON.parse(event.data);
    if (message.type === "progress") {
      $("live-progress").hidden = message.phase !== "finetune";
      if (message.phase === "finetune") {
        setLiveStatus(`Fine-tuning on the references: ${message.done} / ${message.total} steps.`);
        $("live-progress").value = message.done / message.total;
      }
    } else if (message.type === "ready") {
      $("live-progress").hidden = true;
      setLiveStatus("Live.");
      live.timer = setInterval(sendFrame, 10);
    } else if (message.type === "frame") {
      onResult(message);
    } else if (message.type === "error") {
      liveError(message.message);
    }
  };
  socket.onclose = () => {
    if (live.socket === socket) stopLive("The server closed the live session.");
  };
}

function sendFrame() {
  const video = $("live-camera");
  // A frame the server never answered (dropped while results were on their way) stops counting after a second.
  for (const [seq, at] of live.sent) if (performance.now() - at > 1000) live.sent.delete(seq);
  if (!live.socket || live.socket.readyState !== WebSocket.OPEN || live.sent.size >= MAX_IN_FLIGHT ||
      video.readyState < 2 || !video.videoWidth) return;
  const canvas = sendFrame.canvas || (sendFrame.canvas = document.createElement("canvas"));
  const scale = Math.min(1, SEND_WIDTH / video.videoWidth);
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  const seq = live.seq++;
  live.sent.set(seq, performance.now());
  canvas.toBlob(async (blob) => {
    // The frame's number and how many results this page has had: the server drops frames rather than send
    // results faster than the page takes them.
    const header = new Uint32Array([seq, live.had]);
    const body = await blob.arrayBuffer();
    const message = new Uint8Array(header.byteLength + body.byteLength);
    message.set(new Uint8Array(header.buffer), 0);
    message.set(new Uint8Array(body), header.byteLength);
    if (live.socket && live.socket.readyState === WebSocket.OPEN) live.socket.send(message);
  }, "image/jpeg", 0.85);
}

let pendingResult = null; // the frame message whose result image comes next

function onResult(message) {
  live.had += 1;
  const sentAt = live.sent.get(message.seq);
  // This frame came back; the ones sent before it were dropped by the server (it renders only the newest).
  for (const seq of [...live.sent.keys()]) if (seq <= message.seq) live.sent.delete(seq);
  const stats = window.liveStats;
  stats.server = message;
  if (!message.person) stats.noPerson += 1;
  $("live-notice").hidden = message.person;
  $("live-notice").textContent = message.result
    ? "No one in view: holding the last result."
    : "No one in view yet: step in front of the camera.";
  if (message.result) {
    pendingResult = { seq: message.seq, sentAt };
  } else {
    showStats();
  }
}

function showLiveResult(data) {
  const image = $("live-result");
  const old = image.src;
  image.src = URL.createObjectURL(new Blob([data], { type: "image/jpeg" }));
  if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  const stats = window.liveStats;
  if (pendingResult) {
    stats.results.push(pendingResult.seq);
    stats.shownAt.push(performance.now());
    if (pendingResult.sentAt !== undefined) stats.latencies.push(performance.now() - pendingResult.sentAt);
    pendingResult = null;
  }
  showStats();
}

function percentile(values, p) {
  if (!values.length) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function showStats() {
  const stats = window.liveStats;
  const recent = stats.shownAt.filter((t) => t > performance.now() - 2000);
  const fps = recent.length > 1 ? (recent.length - 1) / ((recent[recent.length - 1] - recent[0]) / 1000) : 0;
  const latencies = stats.latencies.slice(-100);
  const server = stats.server || {};
  $("live-stats").textContent = `${fps.toFixed(1)} frames/s shown, latency p50 ${percentile(latencies, 50).toFixed(0)} ms, ` +
    `p95 ${percentile(latencies, 95).toFixed(0)} ms (sent to shown). Server: ${(server.fps || 0).toFixed(1)} frames/s, ` +
    `${(server.server_ms || 0).toFixed(0)} ms a frame (detector ${(server.label_ms || 0).toFixed(0)} ms, model ` +
    `${(server.generate_ms || 0).toFixed(0)} ms), ${server.dropped || 0} dropped.`;
}

function stopLive(status = "Stopped.") {
  clearInterval(live.timer);
  live.timer = null;
  const socket = live.socket;
  live.socket = null;
  if (socket && socket.readyState <= WebSocket.OPEN) socket.close();
  if (live.stream) for (const track of live.stream.getTracks()) track.stop();
  live.stream = null;
  live.sent.clear();
  live.had = 0;
  $("live-camera").srcObject = null;
  $("live-stop").hidden = true;
  $("live-start").hidden = false;
  $("live-start").disabled = false;
  $("live-progress").hidden = true;
  if (!live.error) setLiveStatus(status);
}

$("live-start").addEventListener("click", startLive);
$("live-stop").addEventListener("click", () => {
  live.error = "";
  stopLive();
});
// Called by app.js once /api/info has come: live mode is offered for pose and face models.
function offerLive() {
  $("live-box").hidden = !info.live;
  $("live-start").disabled = !info.live;
}
window.addEventListener("pagehide", () => stopLive());
