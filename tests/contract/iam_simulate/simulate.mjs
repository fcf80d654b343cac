// Evaluates IAM requests against identity policies with @cloud-copilot/iam-simulate, which
// honours condition operators and validates actions, resource ARNs and context keys.
// stdin:  {"policies": {NAME: POLICY}, "requests": [{"policy": NAME, "principal": ARN,
//          "action": "s3:ListBucket", "resource": ARN, "accountId": "123456789012",
//          "context": {"s3:prefix": "lake/"}}]}
// stdout: [{"result": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied" | "Error",
//           "errors": ..., "ignoredContextKeys": [...]}], one per request, in order.
import { runSimulation } from '@cloud-copilot/iam-simulate'

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const { policies, requests } = JSON.parse(Buffer.concat(chunks).toString('utf8'))

const results = []
for (const request of requests) {
  const simulation = {
    identityPolicies: [{ name: request.policy, policy: policies[request.policy] }],
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    request: {
      principal: request.principal,
      action: request.action,
      resource: { resource: request.resource, accountId: request.accountId },
      contextVariables: request.context ?? {}
    }
  }
  const response = await runSimulation(simulation, { simulationMode: 'Strict' })
  if (response.resultType === 'error') {
    results.push({ result: 'Error', errors: response.errors })
  } else {
    const single = response.resultType === 'single' ? response.result : response.results[0]
    results.push({ result: response.overallResult, ignoredContextKeys: single?.ignoredContextKeys ?? [] })
  }
}
process.stdout.write(JSON.stringify(results))
