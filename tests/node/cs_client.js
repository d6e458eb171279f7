// The TypeScript SDK @alicloud/cs20151215, unmodified, against a clustertasks server.
// Input: CT_ENDPOINT (host:port), CT_PROTOCOL (http|https), CT_ACCESS_KEY_ID,
// CT_ACCESS_KEY_SECRET, CT_SIGNATURE_ALGORITHM ("" for ACS3, or "v2"). HTTPS trusts the CA
// in NODE_EXTRA_CA_CERTS, as a user would set it. Output: one JSON line of what it saw.
'use strict';

const Cs = require('@alicloud/cs20151215');
const { $OpenApiUtil } = require('@alicloud/openapi-core');

function client(secret) {
  const config = new $OpenApiUtil.Config({
    accessKeyId: process.env.CT_ACCESS_KEY_ID,
    accessKeySecret: secret || process.env.CT_ACCESS_KEY_SECRET,
    endpoint: process.env.CT_ENDPOINT,
    protocol: process.env.CT_PROTOCOL,
    regionId: 'cn-hangzhou',
  });
  if (process.env.CT_SIGNATURE_ALGORITHM) {
    config.signatureAlgorithm = process.env.CT_SIGNATURE_ALGORITHM;
  }
  return new Cs.default(config);
}

async function failure(call) {
  try {
    await call();
  } catch (error) {
    return { code: error.code, statusCode: error.statusCode };
  }
  return null;
}

async function main() {
  const cs = client();
  const created = await cs.createCluster(new Cs.CreateClusterRequest({
    name: 'from-node',
    regionId: 'cn-hangzhou',
    clusterType: 'ManagedKubernetes',
    kubernetesVersion: '1.32.1-aliyun.1',
    vswitchIds: ['vsw-hangzhou-h'],
    deletionProtection: true,
    nodepools: [new Cs.Nodepool({
      nodepoolInfo: new Cs.NodepoolNodepoolInfo({ name: 'pool-a' }),
      scalingGroup: new Cs.NodepoolScalingGroup({
        instanceTypes: ['ecs.g7.large'], desiredSize: 1,
      }),
    })],
  }));
  const taskId = created.body.taskId;
  let task = null;
  for (let i = 0; i < 600; i++) {
    task = (await cs.describeTaskInfo(taskId)).body;
    if (['success', 'fail', 'canceled'].includes(task.state)) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const detail = (await cs.describeClusterDetail(created.body.clusterId)).body;
  const protectedError = await failure(
    () => cs.deleteCluster(created.body.clusterId, new Cs.DeleteClusterRequest({})));
  const signatureError = await failure(() => client('guess').describeTaskInfo(taskId));
  console.log(JSON.stringify({
    clusterId: created.body.clusterId,
    taskState: task.state,
    stages: task.stages.length,
    name: detail.name,
    protectedError,
    signatureError,
  }));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
