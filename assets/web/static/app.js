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
  // personal_sign takes the message as hex-encoded UTF-8 (what every wallet accepts).
  const hex = "0x" + Array.from(new TextEncoder().encode(message), (b) => b.toString(16).padStart(2, "0")).join("");
  const signature = await window.ethereum.request({ method: "personal_sign", params: [hex, address] });
  const res = await fetch("/api/v1/auth/siwe", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ message, signature }),
  });
  if (res.ok) location.reload(); else alert((await res.json()).error.message);
}

// An amount as typed in whole units (`0.05`, `2.5 ETH`, `7 USDC`) to the asset's
// smallest unit, exactly (BigInt, no floating point), with `decimals` digits after the
// point at most; null when it is not one.
function toBaseUnits(text, decimals, symbol) {
  let t = text.trim();
  if (symbol && t.toLowerCase().endsWith(symbol.toLowerCase())) t = t.slice(0, t.length - symbol.length).trim();
  const m = /^(\d*)(?:\.(\d*))?$/.exec(t);
  if (!m || (m[1] === "" && !m[2]) || (m[2] || "").length > decimals) return null;
  const scale = 10n ** BigInt(decimals);
  return BigInt(m[1] || "0") * scale + BigInt((m[2] || "").padEnd(decimals, "0") || "0");
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Deposit or withdraw with the browser's own wallet (EIP-1193): it signs `deposit()`
// (the amount as value) or, when fees are in a token (`data-token`), first the token's
// `approve(arena, amount)` and then `deposit(amount)`; or `withdraw(amount)`, all to the
// Arena contract. Once mined, the transaction is reported to the server, which checks
// its event on chain and credits or debits the account (again until it is deep enough).
async function walletMoney(box, deposit) {
  const status = document.getElementById("wallet-status");
  const say = (text, bad) => { status.textContent = text; status.classList.toggle("error", !!bad); };
  if (!window.ethereum) { say("No browser wallet found: install one (MetaMask or any EIP-1193 wallet).", true); return; }
  const symbol = box.dataset.symbol || "ETH";
  const decimals = Number(box.dataset.decimals || "18");
  const token = box.dataset.token || "";
  const wei = toBaseUnits(document.getElementById("wallet-amount").value, decimals, symbol);
  if (wei === null || wei === 0n) { say(`Amount (${symbol}): a number above zero with at most ${decimals} digits after the point, like 0.05.`, true); return; }
  if (!deposit && wei > BigInt(box.dataset.available)) { say(`Amount (${symbol}): more than your available balance.`, true); return; }
  try {
    const [account] = await window.ethereum.request({ method: "eth_requestAccounts" });
    if (!account || account.toLowerCase() !== box.dataset.wallet.toLowerCase()) {
      say(`Your wallet's account ${account} is not the one signed in here (${box.dataset.wallet}): switch accounts in the wallet.`, true);
      return;
    }
    const want = BigInt(box.dataset.chainId);
    if (BigInt(await window.ethereum.request({ method: "eth_chainId" })) !== want) {
      await window.ethereum.request({ method: "wallet_switchEthereumChain", params: [{ chainId: "0x" + want.toString(16) }] });
    }
    const word = (n) => n.toString(16).padStart(64, "0");
    const mined = async (hash) => {
      for (;;) {
        const r = await window.ethereum.request({ method: "eth_getTransactionReceipt", params: [hash] });
        if (r) return r.status !== "0x0";
        await sleep(1000);
      }
    };
    if (deposit && token) {
      // allowance(owner, arena): an earlier approval that covers this amount is used.
      const allowed = BigInt(await window.ethereum.request({ method: "eth_call", params: [
        { to: token, data: "0xdd62ed3e" + word(BigInt(account)) + word(BigInt(box.dataset.arena)) }, "latest"] }));
      const approve = async (amount, text) => {
        // approve(address,uint256) on the token.
        const tx = { from: account, to: token, value: "0x0", data: "0x095ea7b3" + word(BigInt(box.dataset.arena)) + word(amount) };
        say(text);
        const hash = await window.ethereum.request({ method: "eth_sendTransaction", params: [tx] });
        say(`Approval sent ${hash}; waiting for it to be mined…`);
        if (!(await mined(hash))) { say(`Approval ${hash} failed on chain: nothing moved.`, true); return false; }
        return true;
      };
      if (allowed < wei) {
        // Some tokens (USDT) refuse to change one non-zero allowance to another.
        if (allowed > 0n && !(await approve(0n, "Confirm in your wallet: reset the Arena's old allowance…"))) return;
        if (!(await approve(wei, `Confirm in your wallet: allow the Arena to take this ${symbol} (1 of 2)…`))) return;
      }
    }
    const tx = !deposit
      ? { from: account, to: box.dataset.arena, value: "0x0", data: "0x2e1a7d4d" + word(wei) }
      : token
        // deposit(uint256) on the token Arena.
        ? { from: account, to: box.dataset.arena, value: "0x0", data: "0xb6b55f25" + word(wei) }
        // deposit() on the ETH Arena, the amount as value.
        : { from: account, to: box.dataset.arena, value: "0x" + wei.toString(16), data: "0xd0e30db0" };
    say(token && deposit ? `Confirm the deposit in your wallet (2 of 2)…` : "Confirm the transaction in your wallet…");
    const hash = await window.ethereum.request({ method: "eth_sendTransaction", params: [tx] });
    say(`Sent ${hash}; waiting for it to be mined…`);
    if (!(await mined(hash))) { say(`Transaction ${hash} failed on chain: nothing moved.`, true); return; }
    for (;;) {
      const res = await fetch(`/api/v1/account/${deposit ? "deposits" : "withdrawals"}`, {
        method: "POST", headers: { "content-type": "application/json", "x-csrf-token": box.dataset.csrf },
        body: JSON.stringify({ tx_hash: hash }),
      });
      if (res.ok) { location.reload(); return; }
      const err = (await res.json()).error;
      if (err.code !== "pending") { say(err.message, true); return; }
      say(err.message);
      await sleep(3000);
    }
  } catch (e) {
    say(e && e.message ? e.message : String(e), true);
  }
}

function watchMatch(section) {
  const id = section.dataset.match;
  const rounds = Number(section.dataset.rounds) || 0;
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/ws/matches/${id}`);
  const note = document.getElementById("live-note");
  const progress = document.getElementById("round-progress");
  const nameOf = (entry) => {
    const seat = document.querySelector(`.seat[data-entry="${entry}"]`);
    return seat ? seat.dataset.name : `entry ${entry}`;
  };
  const totals = {};
  const scored = {};
  const board = document.querySelector("#scoreboard tbody");
  const updateBoard = () => {
    if (!board) return;
    const rows = [...board.querySelectorAll("tr")];
    rows.forEach((r) => {
      const e = r.dataset.entry;
      r.querySelector(".sum").textContent = (totals[e] || 0).toFixed(3);
      r.querySelector(".rounds").textContent = String(scored[e] || 0);
    });
    rows.sort((a, b) => (totals[b.dataset.entry] || 0) - (totals[a.dataset.entry] || 0)).forEach((r) => board.appendChild(r));
  };
  ws.onmessage = (msg) => {
    const e = JSON.parse(msg.data);
    const stream = (entry) => document.getElementById(`stream-${entry}`);
    switch (e.type) {
      case "match_created": note.textContent = "The match is formed; the first round starts in a moment."; break;
      case "round_started": {
        const n = e.round + 1;
        if (progress) progress.textContent = rounds ? `Round ${n} of ${rounds}: ${e.task}` : `Round ${n}: ${e.task}`;
        document.querySelectorAll(".stream").forEach((s) => { s.textContent += `${s.textContent ? "\n" : ""}— round ${n} —\n`; });
        note.textContent = `Round ${n} started: the agents are answering.`;
        break;
      }
      case "token_delta": { const s = stream(e.entry_id); if (s) s.textContent += e.text; break; }
      case "response_complete":
        note.textContent = `${nameOf(e.entry_id)} finished its answer (${e.tokens} tokens${e.finish === "length" ? ", cut off at the limit" : ""}).`;
        break;
      case "scores": {
        totals[e.entry_id] = (totals[e.entry_id] || 0) + e.combined;
        scored[e.entry_id] = (scored[e.entry_id] || 0) + 1;
        const t = document.getElementById(`total-${e.entry_id}`);
        if (t) t.textContent = totals[e.entry_id].toFixed(3);
        const list = document.getElementById(`judges-${e.entry_id}`);
        if (list) {
          const head = document.createElement("li");
          head.className = "round-score";
          head.textContent = `Round ${e.round + 1}: ${e.combined.toFixed(3)}${e.hard_failed ? " (broke a hard rule)" : ""}`;
          list.appendChild(head);
          e.judges.forEach((j) => {
            const li = document.createElement("li");
            li.className = "judge";
            li.textContent = `${j.judge} ${j.score.toFixed(2)}${j.rationale ? ` — ${j.rationale}` : ""}`;
            list.appendChild(li);
          });
        }
        updateBoard();
        note.textContent = `The judges scored ${nameOf(e.entry_id)} in round ${e.round + 1}.`;
        break;
      }
      case "ranking": note.textContent = "The judges' ranking is in; paying out…"; break;
      case "payouts": note.textContent = "Payouts computed; updating ratings…"; break;
      case "rating_changes": note.textContent = "Ratings updated."; break;
      case "match_settled": case "match_refunded":
        note.textContent = e.type === "match_settled" ? "Settled: loading the results…" : `Refunded: ${e.reason}`;
        document.getElementById("match-status").textContent = e.type === "match_settled" ? "settled" : "refunded";
        setTimeout(() => location.reload(), 500);
        break;
      default: break;
    }
  };
  ws.onclose = (c) => {
    if (c.code === 4008) note.textContent = "Disconnected: the connection fell behind. Reload to catch up.";
    else if (c.code === 4000) location.reload();
  };
}

// A finished match replayed from its stored transcript: each round's task, the
// answers typed out side by side, then each answer's judge scores.
async function replayMatch(button) {
  const view = document.getElementById("replay-view");
  const progress = document.getElementById("replay-progress");
  const task = document.getElementById("replay-task");
  const seats = document.getElementById("replay-seats");
  const rounds = [...document.querySelectorAll("#transcript article.round")];
  button.disabled = true;
  view.hidden = false;
  for (const [i, round] of rounds.entries()) {
    progress.textContent = `Round ${i + 1} of ${rounds.length}`;
    task.textContent = round.querySelector("blockquote").textContent;
    seats.replaceChildren();
    const answers = [...round.querySelectorAll(".response")].map((r) => {
      const card = document.createElement("div");
      card.className = "seat";
      const name = document.createElement("h3");
      name.textContent = r.dataset.agent;
      const text = document.createElement("pre");
      text.className = "stream";
      const scores = document.createElement("p");
      scores.className = "score";
      card.append(name, text, scores);
      seats.appendChild(card);
      const rows = [...r.querySelectorAll(".scores tbody tr")].map((tr) => [...tr.cells].map((c) => c.textContent));
      return { full: r.querySelector("pre").textContent, text, scores, rows };
    });
    const longest = Math.max(0, ...answers.map((a) => a.full.length));
    for (let at = 0; at <= longest; at += 3) {
      answers.forEach((a) => { a.text.textContent = a.full.slice(0, at); });
      await sleep(15);
    }
    answers.forEach((a) => { a.text.textContent = a.full; });
    progress.textContent = `Round ${i + 1} of ${rounds.length}: the judges score`;
    for (const a of answers) {
      a.scores.textContent = a.rows.map(([judge, score]) => `${judge} ${score}`).join(", ");
      await sleep(300);
    }
    await sleep(800);
  }
  progress.textContent = "Replay finished: the outcome is above.";
  button.disabled = false;
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

// The datasets page: the download link, its file name and the snippets follow the
// filters as they change, not only after Preview (the same name rule as the server's
// `file_name` in web/src/api/datasets.rs).
function datasetLinks(form) {
  const link = document.getElementById("download");
  const update = () => {
    const params = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (String(v).trim() !== "") params.append(k, String(v).trim());
    const query = params.toString();
    const path = `/api/v1/datasets/preferences${query ? `?${query}` : ""}`;
    const clean = (s) => s.replace(/[^A-Za-z0-9-]/g, "").slice(0, 40);
    let name = `rlfc-preferences-${clean(params.get("space") || "") || "all-spaces"}`;
    if (params.get("agent")) name += `-agent-${clean(params.get("agent"))}`;
    if (params.get("training_run")) name += `-run-${clean(params.get("training_run"))}`;
    if (params.get("complete_only") === "true") name += "-complete";
    name += `-${clean(params.get("format") || "trl")}.jsonl`;
    const full = `${link.dataset.base}${path}`;
    link.href = path;
    link.download = name;
    link.textContent = `Download ${name}`;
    document.querySelector("#snippet-python code").textContent =
      `from datasets import load_dataset\n\nds = load_dataset("json", data_files="${full}", split="train")`;
    document.querySelector("#snippet-curl code").textContent = `curl -L -o ${name} "${full}"`;
  };
  form.addEventListener("input", update);
  form.addEventListener("change", update);
}

// A table or block that scrolls (wide tables on a phone, long previews) can be
// reached and scrolled with the keyboard.
function focusableScrollers() {
  document.querySelectorAll("table, pre").forEach((el) => {
    const scrolls = el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 1;
    if (scrolls && !el.hasAttribute("tabindex")) el.tabIndex = 0;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  // Forms that cannot be undone ask first.
  document.querySelectorAll("form[data-confirm]").forEach((f) => f.addEventListener("submit", (e) => {
    if (!window.confirm(f.dataset.confirm)) e.preventDefault();
  }));
  focusableScrollers();
  window.addEventListener("resize", focusableScrollers);
  document.querySelectorAll("[data-siwe]").forEach((b) => b.addEventListener("click", signInWithEthereum));
  const live = document.getElementById("live");
  if (live && live.dataset.live === "true") watchMatch(live);
  limitHints();
  const replay = document.getElementById("replay");
  if (replay) replay.addEventListener("click", () => replayMatch(replay));
  const dataset = document.getElementById("dataset-form");
  if (dataset) datasetLinks(dataset);
  const wallet = document.getElementById("wallet");
  if (wallet) {
    document.getElementById("wallet-deposit").addEventListener("click", () => walletMoney(wallet, true));
    document.getElementById("wallet-withdraw").addEventListener("click", () => walletMoney(wallet, false));
  }
});
