// RLFC Arena's own script: Sign-In with Ethereum through an injected wallet, the live
// match view over the websocket, and inline limits on the studio form. No framework.
"use strict";

async function signInWithEthereum() {
  if (!window.ethereum) {
    alert("No Ethereum wallet found in this browser. In demo mode, use Dev login.");
    return;
  }
  const [address] = await window.ethereum.request({ method: "eth_requestAccounts" });
  // The server writes the EIP-4361 message (checksummed address, its domain and nonce).
  const n = await (await fetch(`/api/v1/auth/nonce?address=${address}`)).json();
  const message = n.message;
  const signature = await window.ethereum.request({ method: "personal_sign", params: [message, address] });
  const res = await fetch("/api/v1/auth/siwe", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ message, signature }),
  });
  if (res.ok) location.reload(); else alert((await res.json()).error.message);
}

function watchMatch(section) {
  const id = section.dataset.match;
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/ws/matches/${id}`);
  const note = document.getElementById("live-note");
  ws.onmessage = (msg) => {
    const e = JSON.parse(msg.data);
    const stream = (entry) => document.getElementById(`stream-${entry}`);
    switch (e.type) {
      case "round_started":
        document.querySelectorAll(".stream").forEach((s) => { s.textContent += `\n— round ${e.round}: ${e.task}\n`; });
        break;
      case "token_delta": { const s = stream(e.entry_id); if (s) s.textContent += e.text; break; }
      case "scores": {
        const p = document.getElementById(`score-${e.entry_id}`);
        if (p) p.textContent = `round ${e.round}: ${e.combined.toFixed(3)} ` + e.judges.map((j) => `${j.judge} ${j.score.toFixed(2)}`).join(", ");
        break;
      }
      case "match_settled": case "match_refunded":
        note.textContent = e.type === "match_settled" ? "Settled." : `Refunded: ${e.reason}`;
        document.getElementById("match-status").textContent = e.type === "match_settled" ? "settled" : "refunded";
        setTimeout(() => location.reload(), 500);
        break;
      default: note.textContent = `${e.type.replace("_", " ")} (event ${e.seq})`;
    }
  };
  ws.onclose = (c) => { if (c.code === 4008) note.textContent = "Disconnected: the connection fell behind. Reload to catch up."; };
}

function limitHints() {
  document.querySelectorAll("[data-maxlength]").forEach((t) => {
    const max = Number(t.dataset.maxlength);
    const hint = t.parentElement.querySelector(".hint");
    const update = () => { hint.textContent = `${t.value.length} / ${max} characters`; };
    t.addEventListener("input", update); update();
  });
  document.querySelectorAll(".studio input[type=number]").forEach((i) => {
    i.addEventListener("input", () => {
      const bad = !i.checkValidity();
      i.parentElement.classList.toggle("has-error", bad);
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-siwe]").forEach((b) => b.addEventListener("click", signInWithEthereum));
  const live = document.getElementById("live");
  if (live && live.dataset.live === "true") watchMatch(live);
  limitHints();
});
