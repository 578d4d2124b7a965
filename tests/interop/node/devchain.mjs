// Shared by the Node drivers: the JSON request on stdin, and a viem client for the
// Tempo devchain (anvil --network tempo at T4, behind our JSON-RPC front).
import { createClient, http } from 'viem'
import { tempoLocalnet } from 'viem/chains'

/** The one JSON object a driver reads from stdin. */
export async function readStdin() {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return JSON.parse(Buffer.concat(chunks).toString('utf8'))
}

/** A viem client on the devchain at `rpcUrl` (chain id `chainId`), signing as `account`. */
export function devchainClient({ rpcUrl, chainId }, account, options = {}) {
  const chain = {
    ...tempoLocalnet,
    id: Number(chainId),
    hardfork: 't4',
    rpcUrls: { default: { http: [rpcUrl] } },
  }
  return createClient({ account, chain, transport: http(rpcUrl), ...options })
}
