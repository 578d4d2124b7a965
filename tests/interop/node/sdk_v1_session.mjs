// The reference SDK (mppx 0.11.0) as a v1 session client paying our reference server on
// the Tempo devchain: open, need-voucher rounds on an SSE stream, an interrupted stream,
// then a cooperative close for the last acceptedCumulative seen.
//
// Credentials come from the SDK's v1 session method (`sessionLegacy`), with our escrow
// pinned as trusted (`escrowContract`): the open is the SDK's automatic one
// (`createCredential(challenge)` builds approve + open in one 0x76, its gas from viem's
// `eth_fillTransaction`, which the devchain's JSON-RPC front answers by running the calls),
// the vouchers and the close use its documented manual mode
// (`createCredential(response, { action, ... })`) so the test controls when to hang up.
//
// stdin:  {url, rpcUrl, chainId, privateKey, escrow, deposit, tokens, interruptAfterRounds}
// stdout: {channelId, openTx, rounds, delivered, receipts, lastAccepted, close}
import { formatUnits } from 'viem'
import { readInput, tempoClient } from './tempo_client.mjs'
import { Challenge, Credential, Receipt } from 'mppx'
import { Mppx, sessionLegacy } from 'mppx/client'

const input = await readInput()
const { account, client } = tempoClient(input)
const mppx = Mppx.create({
  methods: [sessionLegacy({
    account, getClient: () => client, escrowContract: input.escrow,
    deposit: formatUnits(BigInt(input.deposit), 6),
  })],
  polyfill: false,
})
const body = (tokens) => JSON.stringify({
  model: 'mpp-fake-1',
  messages: [{ role: 'user', content: 'interop' }],
  stream: true,
  max_tokens: tokens,
})

async function challenge() {
  const response = await fetch(input.url, { method: 'POST', body: body(1), headers: { 'content-type': 'application/json' } })
  if (response.status !== 402) throw new Error(`expected 402, got ${response.status}`)
  return response
}

async function head(context) {
  const authorization = await mppx.createCredential(await challenge(), context)
  const response = await fetch(input.url, { method: 'HEAD', headers: { authorization } })
  if (response.status !== 200) {
    throw new Error(`${context.action} refused: ${response.status} ${response.headers.get('www-authenticate') ? '' : await response.text()}`)
  }
  // The SDK parses and schema-checks the receipt; it must be a tempo success for our channel.
  const receipt = Receipt.fromResponse(response)
  if (receipt.method !== 'tempo' || receipt.status !== 'success' || receipt.reference !== context.channelId) {
    throw new Error(`unexpected receipt ${JSON.stringify(receipt)}`)
  }
  return receipt
}

// -- open ---------------------------------------------------------------------------------
const first = await challenge()
const request = Challenge.fromResponse(first).request
// The SDK's own automatic open (initial voucher: one unit); the server broadcasts it.
const openCredential = await mppx.createCredential(first)
const channelId = Credential.deserialize(openCredential).payload.channelId
const openResponse = await fetch(input.url, { method: 'POST', headers: { authorization: openCredential } })
if (openResponse.status !== 200) throw new Error(`open refused: ${openResponse.status} ${await openResponse.text()}`)
const opened = Receipt.fromResponse(openResponse)
const receipts = [opened]

// -- a stream answered with vouchers, interrupted -------------------------------------------
let accepted = 0n
let rounds = 0
let delivered = 0
const abort = new AbortController()
const price = BigInt(request.amount)
let credential = await mppx.createCredential(await challenge(), {
  action: 'voucher', channelId, cumulativeAmountRaw: String(price),
})
const stream = await fetch(input.url, {
  method: 'POST',
  body: body(input.tokens),
  headers: { 'content-type': 'application/json', authorization: credential },
  signal: abort.signal,
})
if (stream.status !== 200) throw new Error(`stream refused: ${stream.status} ${await stream.text()}`)
const decoder = new TextDecoder()
let buffer = ''
try {
  for await (const chunk of stream.body) {
    buffer += decoder.decode(chunk, { stream: true })
    let cut
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const raw = buffer.slice(0, cut)
      buffer = buffer.slice(cut + 2)
      const name = /^event: (.*)$/m.exec(raw)?.[1] ?? 'message'
      const data = /^data: (.*)$/m.exec(raw)?.[1]
      if (name === 'payment-need-voucher') {
        const need = JSON.parse(data)
        if (need.channelId !== channelId) throw new Error('need-voucher for another channel')
        rounds += 1
        const receipt = await head({ action: 'voucher', channelId, cumulativeAmountRaw: need.requiredCumulative })
        receipts.push(receipt)
        accepted = BigInt(receipt.acceptedCumulative ?? need.requiredCumulative)
        // Hang up right after paying ahead: the last accepted voucher is above spent.
        if (rounds >= input.interruptAfterRounds) { abort.abort(); break }
      } else if (name === 'message' && data && data !== '[DONE]') {
        if (JSON.parse(data).choices?.[0]?.delta?.content) delivered += 1
      }
    }
    if (abort.signal.aborted) break
  }
} catch (error) {
  if (!abort.signal.aborted) throw error
}

// -- close for the last acceptedCumulative seen (what the SDK's manager does) -----------------
const close = await head({ action: 'close', channelId, cumulativeAmountRaw: String(accepted) })
receipts.push(close)
process.stdout.write(JSON.stringify({
  channelId,
  openTx: opened.txHash ?? null,
  rounds,
  delivered,
  lastAccepted: String(accepted),
  receipts: receipts.length,
  close,
}, (_, v) => (typeof v === 'bigint' ? v.toString() : v)))
