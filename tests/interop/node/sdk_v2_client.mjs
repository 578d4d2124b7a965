// The reference SDK (mppx 0.11.0) as a session v2 client: its session manager
// (`tempo.session.manager`, the auto-driving client) pays a v2 server over SSE on the
// Tempo devchain. It opens a channel, answers every `payment-need-voucher` event,
// tops up when the deposit runs out, and closes cooperatively -- all by itself; this
// driver only calls `sse()` and `close()` with ordinary manager options.
//
// To show what the SDK does on the wire, the manager's `fetch` option (an ordinary
// option: "fetch implementation used for HTTP probes, management posts, and paid
// retries") is a recorder: it passes every request through unchanged and logs the
// request (method, body or not, the credential's action and amounts, Payment-Session)
// and the answer (status, Payment-Receipt, Payment-Session-Snapshot, content type, and
// for an event stream the payment events in it, read from a tee of the body).
//
// stdin:  {rpcUrl, chainId, payerKey, url, body, requests, close, resume?,
//          depositRaw?, topUpAmount?, maxDeposit?, escrow?, record?}
//         resume: after `requests`, a second, cold manager with `bootstrap: true`
//         streams `resume` more requests on the same channel (recovered from the
//         server's Payment-Session-Snapshot) and is the one that closes;
//         depositRaw: opening deposit in base units (the SDK's `depositRaw` context,
//         given as the manager's `credentialContext`); topUpAmount / maxDeposit: whole
//         tokens as decimal strings (manager options); escrow: pin the reserve;
//         record: false leaves the wire unrecorded (for timing).
// stdout: {channelId, descriptor, phases, requests: [{phase, ms, messages}], wire: [...],
//          vouchers: [...credentials with an action], needVoucher: [...], streamEvents,
//          streamReceipts, topUps: [...wire entries], close, afterClose, cumulative, errors}
import { Challenge, Credential } from 'mppx'
import { tempo } from 'mppx/client'
import { Session } from 'mppx/tempo'
import { keccak256 } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { devchainClient, readStdin } from './devchain.mjs'

const input = await readStdin()
const account = privateKeyToAccount(input.payerKey)
const client = devchainClient(input, account, { pollingInterval: 200 })

const wire = []
const needVoucher = []
const streamEvents = []
const streamReads = []
let phase = 0

/** A session manager with ordinary options only (`bootstrap`: the same-route HEAD recovery). */
function createManager(bootstrap) {
  return tempo.session.manager({
    account,
    client,
    decimals: 6,
    // `record: false` (benchmarks): the plain fetch, nothing tee'd or parsed on the side.
    fetch: input.record === false ? fetch : recordingFetch,
    ...(bootstrap ? { bootstrap: true } : {}),
    ...(input.escrow ? { escrow: input.escrow } : {}),
    ...(input.maxDeposit ? { maxDeposit: input.maxDeposit } : {}),
    ...(input.topUpAmount ? { topUpAmount: input.topUpAmount } : {}),
    ...(input.depositRaw ? { credentialContext: { depositRaw: String(input.depositRaw) } } : {}),
  })
}

/** Stream `count` paid requests on `manager`; false once one failed (recorded in errors). */
async function stream(manager, count) {
  try {
    for (let i = 0; i < count; i++) {
      const messages = []
      const request = report.requests.length
      const started = performance.now()
      const events = await manager.sse(input.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(input.body),
        onReceipt: (receipt) => report.streamReceipts.push({ request, ...receipt }),
      })
      for await (const data of events) messages.push(data)
      report.requests.push({
        phase,
        ms: performance.now() - started,
        messages: messages.filter((m) => m !== '[DONE]').length,
        done: messages.includes('[DONE]'),
        first: messages[0] ?? null,
      })
    }
    return true
  } catch (error) {
    report.errors.push(`stream (phase ${phase}): ${describe(error)}`)
    return false
  } finally {
    // Every tee'd body has been read to its end before the manager moves on.
    await Promise.allSettled(streamReads)
  }
}

const report = { requests: [], streamReceipts: [], errors: [], phases: [] }
const managers = [createManager(false)]
const ok = await stream(managers[0], Number(input.requests ?? 1))
// `resume`: a second, cold manager (nothing stored) picks the channel up again through
// the server's bootstrap, streams `resume` more requests and closes.
if (ok && input.resume) {
  phase = 1
  managers.push(createManager(true))
  await stream(managers[1], Number(input.resume))
}
for (const manager of managers) {
  report.phases.push({
    channelId: manager.channelId ?? null,
    cumulative: manager.cumulative.toString(),
    state: manager.state?.status ?? null,
  })
}
const last = managers[managers.length - 1]
report.channelId = last.channelId ?? report.phases[0].channelId
report.cumulative = last.cumulative.toString()
if (input.close !== false && last.opened) {
  try {
    report.close = (await last.close()) ?? null
  } catch (error) {
    report.errors.push(`close: ${describe(error)}`)
  }
}
report.afterClose = last.state?.status ?? null
await Promise.allSettled(streamReads)
report.wire = wire
report.needVoucher = needVoucher
report.streamEvents = streamEvents
report.vouchers = wire.filter((w) => w.credential?.action).map((w) => w.credential)
report.descriptor = wire.find((w) => w.credential?.descriptor)?.credential.descriptor ?? null
report.topUps = wire.filter((w) => w.credential?.action === 'topUp')
process.stdout.write(JSON.stringify(report, (_, v) => (typeof v === 'bigint' ? v.toString() : v)))

// -- the recorder -----------------------------------------------------------------------------

async function recordingFetch(resource, init = {}) {
  // Method and headers only: the body is read from `init` and passed on untouched.
  const request = new Request(resource, { method: init.method, headers: init.headers })
  const body = init.body === undefined || init.body === null ? '' : String(init.body)
  const entry = {
    index: wire.length,
    phase,
    method: request.method,
    path: new URL(request.url).pathname,
    hasBody: body.length > 0,
    accept: request.headers.get('accept'),
    acceptPayment: request.headers.get('accept-payment'),
    paymentSession: request.headers.get('payment-session'),
    credential: readCredential(request.headers.get('authorization')),
  }
  wire.push(entry)
  const response = await fetch(resource, init)
  entry.status = response.status
  entry.contentType = response.headers.get('content-type')
  entry.receipt = decodeHeader(response.headers.get('payment-receipt'))
  entry.snapshot = readSnapshot(response.headers.get('payment-session-snapshot'))
  entry.paymentSessionHeader = response.headers.get('payment-session')
  entry.challenge = response.headers.get('www-authenticate') ? readChallenge(response) : null
  if (!entry.contentType?.toLowerCase().startsWith('text/event-stream') || !response.body) {
    return response
  }
  // Tee the event stream: the SDK reads one branch, the recorder the other.
  const [mine, theirs] = response.body.tee()
  streamReads.push(readEvents(mine, entry.index, entry.phase))
  return new Response(theirs, {
    headers: response.headers,
    status: response.status,
    statusText: response.statusText,
  })
}

async function readEvents(body, request, entryPhase) {
  const decoder = new TextDecoder()
  let buffer = ''
  let messages = 0
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true }).replace(/\r\n?/g, '\n')
    let cut
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const raw = buffer.slice(0, cut)
      buffer = buffer.slice(cut + 2)
      const name = /^event: ?(.*)$/m.exec(raw)?.[1] ?? 'message'
      const data = [...raw.matchAll(/^data: ?(.*)$/gm)].map((m) => m[1]).join('\n')
      if (name === 'message') {
        messages += 1
        continue
      }
      const event = { request, phase: entryPhase, event: name, afterMessages: messages, data: parseJson(data) }
      streamEvents.push(event)
      if (name === 'payment-need-voucher') needVoucher.push(event)
    }
  }
}

function readCredential(header) {
  if (!header) return null
  const scheme = Credential.extractPaymentScheme(header)
  if (!scheme) return { unparsed: true }
  const credential = Credential.deserialize(scheme)
  const { payload } = credential
  return {
    method: credential.challenge.method,
    intent: credential.challenge.intent,
    action: payload.action ?? null,
    type: payload.type ?? null,
    channelId: payload.channelId,
    cumulativeAmount: payload.cumulativeAmount ?? null,
    additionalDeposit: payload.additionalDeposit ?? null,
    descriptor: payload.descriptor ?? null,
    hasSignature: typeof payload.signature === 'string',
    // The hash of the signed 0x76 the payer handed over (for a sponsored transaction the
    // server co-signs it, so the hash on chain differs).
    transactionHash: payload.transaction ? keccak256(payload.transaction) : null,
    source: credential.source ?? null,
    challengeId: credential.challenge.id,
  }
}

function readChallenge(response) {
  try {
    return Challenge.fromResponseList(response).map((c) => ({
      method: c.method,
      intent: c.intent,
      id: c.id,
      amount: c.request.amount ?? null,
      suggestedDeposit: c.request.suggestedDeposit ?? null,
      sessionProtocol: c.request.methodDetails?.sessionProtocol ?? null,
      feePayer: c.request.methodDetails?.feePayer ?? null,
      snapshot: c.request.methodDetails?.sessionSnapshot ?? null,
    }))
  } catch (error) {
    return { unparsed: describe(error) }
  }
}

function readSnapshot(header) {
  if (!header) return null
  try {
    return Session.deserializeSnapshot(header)
  } catch (error) {
    return { unparsed: describe(error) }
  }
}

function decodeHeader(value) {
  if (!value) return null
  try {
    return JSON.parse(Buffer.from(value, 'base64url').toString('utf8'))
  } catch (error) {
    return { unparsed: describe(error) }
  }
}

function parseJson(text) {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

function describe(error) {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error)
}
