// A small paid streaming server built on the reference SDK's own v2 session server
// (mppx 0.11.0: Mppx.create with tempo.session, SSE on), for our agent to pay.
// Ordinary SDK options only: an in-memory store, the payee's account, the chain's
// RPC, the canonical reserve, the currency as fee token.
//
// stdin:  {rpcUrl, chainId, payeeKey, currency, escrow, amount, suggestedDeposit, tokens,
//          feePayer, bootstrap, hints}  (feePayer: the payee co-signs and pays the fees of
//          opens/top-ups; bootstrap: the SDK's same-route HEAD recovery with a
//          `resolveChannelId` that finds the proven payer's last channel; hints: besides,
//          a request's `Payment-Session` hint names the channel, so its 402 challenge
//          carries that channel's snapshot)
//         (amount and suggestedDeposit as decimal strings in whole tokens, 6 decimals)
// stdout: one JSON line {url} once listening; then one JSON line per settlement.
// Each paid GET/POST streams `tokens` SSE data events (fake completion chunks),
// charging one `amount` per event; management requests answer 204 with a receipt.
import * as nodeHttp from 'node:http'
import { Credential } from 'mppx'
import { Mppx, Request as MppxRequest, Store, tempo } from 'mppx/server'
import { privateKeyToAccount } from 'viem/accounts'
import { devchainClient, readStdin } from './devchain.mjs'

const input = await readStdin()
const account = privateKeyToAccount(input.payeeKey)
const client = devchainClient(input, account, { pollingInterval: 200 })

// Application-owned channel lookup (the SDK leaves it to the app): payer -> last channel paid.
const payerChannels = new Map()
const bootstrap = Boolean(input.bootstrap || input.hints)
function resolveChannelId({ request, source }) {
  const hint = input.hints ? request?.headers?.get('payment-session') : undefined
  if (hint) return hint
  const payer = typeof source === 'string' ? source.split(':').at(-1)?.toLowerCase() : undefined
  return payer ? payerChannels.get(payer) : undefined
}
function rememberChannel(request) {
  try {
    const { payload } = Credential.fromRequest(request)
    if (payload?.descriptor?.payer && payload.channelId)
      payerChannels.set(payload.descriptor.payer.toLowerCase(), payload.channelId)
  } catch {}
}

const mppx = Mppx.create({
  secretKey: 'mppagent-interop-secret-key-at-least-32-bytes',
  methods: [
    tempo.session({
      account,
      currency: input.currency,
      decimals: 6,
      escrowContract: input.escrow,
      chainId: Number(input.chainId),
      feeToken: input.currency,
      getClient: () => client,
      store: Store.memory(),
      sse: true,
      ...(input.feePayer ? { feePayer: true } : {}),
      ...(bootstrap ? { bootstrap: true, resolveChannelId } : {}),
      onSessionSettlement: (context) => {
        process.stdout.write(JSON.stringify({ settlement: String(context?.txHash ?? '') }) + '\n')
      },
    }),
  ],
})

const words = Array.from({ length: Number(input.tokens) }, (_, i) => `w${i} `)

async function handler(request) {
  const result = await mppx.session({
    amount: input.amount,
    suggestedDeposit: input.suggestedDeposit,
    unitType: 'token',
  })(request)
  if (result.status === 402) return result.challenge
  if (bootstrap) rememberChannel(request)
  if (request.method === 'HEAD' || (request.method === 'POST' && !(await hasBody(request)))) {
    return result.withReceipt(new Response(null, { status: 204 }))
  }
  return result.withReceipt(async function* (stream) {
    for (const word of words) {
      await stream.charge()
      yield JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: word } }] })
    }
  })
}

async function hasBody(request) {
  const text = await request.clone().text()
  return text.length > 0
}

const server = nodeHttp.createServer(MppxRequest.toNodeListener(handler))
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address()
  process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${port}/v1/chat/completions` }) + '\n')
})
process.on('SIGTERM', () => server.close(() => process.exit(0)))
