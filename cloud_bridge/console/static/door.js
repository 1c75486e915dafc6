// The butler at the door: the phone's camera reads the resident's household code with the
// browser's own BarcodeDetector, where it has one. The camera view lies over the whole page,
// outside the live cards, so that a card redrawn by another alert never stops it. Without a
// detector (or a camera, or the permission) the card's box takes the code's text instead.

import { text } from "./format.js";

const LOOK_EVERY_MS = 250;
let open = null; // { stream, timer, overlay }

export const cameraReads = () => "BarcodeDetector" in window && Boolean(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);

// Looks until a QR code is seen (found(text)) or the butler closes the view. False when the
// camera cannot be had: the typed box is still there.
export async function look(found) {
  close();
  let detector;
  let stream;
  try {
    detector = new window.BarcodeDetector({ formats: ["qr_code"] });
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
  } catch (_) {
    return false;
  }
  const overlay = document.createElement("div");
  overlay.className = "door-camera";
  overlay.setAttribute("role", "dialog");
  overlay.setAttribute("aria-label", text("doorCameraHint"));
  const video = document.createElement("video");
  video.muted = true;
  video.playsInline = true;
  video.srcObject = stream;
  const hint = document.createElement("p");
  hint.textContent = text("doorCameraHint");
  const shut = document.createElement("button");
  shut.type = "button";
  shut.className = "primary door-camera-close";
  shut.textContent = text("doorCameraClose");
  shut.addEventListener("click", close);
  overlay.append(video, hint, shut);
  document.body.append(overlay);
  const looking = { stream, overlay, timer: null };
  open = looking;
  await video.play().catch(() => {});
  looking.timer = setInterval(async () => {
    let codes = [];
    try {
      codes = await detector.detect(video);
    } catch (_) {
      return; // a frame not ready yet
    }
    if (open !== looking || !codes.length) return;
    close();
    found(codes[0].rawValue);
  }, LOOK_EVERY_MS);
  return true;
}

export function close() {
  if (!open) return;
  clearInterval(open.timer);
  for (const track of open.stream.getTracks()) track.stop();
  open.overlay.remove();
  open = null;
}
