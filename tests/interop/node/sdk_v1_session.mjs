// The reference SDK (mppx 0.11.0) as a v1 session client paying our reference server on
// the Tempo devchain: open, need-voucher rounds on an SSE stream, an interrupted stream,
// then a cooperative close for the last acceptedCumulative seen.
//
// Credentials come from the SDK's v1 session method (`sessionLegacy`) in its documented
// manual mode (`createCredential(response, { action, ... })`), with our escrow pinned as
// trusted (`escrowContract`). One thing is not the SDK's own: its auto-open takes the gas
// limit from eth_estimateGas, which anvil's Tempo mode answers with a flat figure too small
// for approve + open (see the README), so the open transaction -- the same calls, fee
// token and expiring nonce the SDK builds -- is prepared with viem and an explicit gas
// limit, and handed to the SDK's manual `open` action, which signs the initial voucher.
//
// stdin:  {url, rpcUrl, chainId, privateKey, escrow, deposit, tokens, interruptAfterRounds, gas}
// stdout: {channelId, openTx, rounds, delivered, receipts, lastAccepted, close}
import { signTransaction } from 'viem/actions'
import { legacySession, prepareOpen, readInput, tempoClient } from './tempo_client.mjs'
import { Hex } from 'ox'
import { Challenge, Receipt } from 'mppx'
import { Mppx, sessionLegacy } from 'mppx/client'

const Channel = await import(new URL('Channel.js', legacySession).href)

const input = await readInput()
const { account, client } = tempoClient(input)
const mppx = Mppx.create({
  methods: [sessionLegacy({ account, getClient: () => client, escrowContract: input.escrow })],
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
const payee = request.recipient
const currency = request.currency
const deposit = BigInt(input.deposit)
const salt = Hex.random(32)
const channelId = Channel.computeId({
  authorizedSigner: account.address,
  chainId: Number(input.chainId),
  escrowContract: input.escrow,
  payee,
  payer: account.address,
  salt,
  token: currency,
})
const prepared = await prepareOpen(client, account, {
  escrow: input.escrow, payee, currency, deposit, salt, signer: account.address, gas: BigInt(input.gas),
})
const transaction = await signTransaction(client, prepared)
const receipts = []
const opened = await head({ action: 'open', channelId, transaction, cumulativeAmountRaw: '0' })
receipts.push(opened)

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
