// fhir-kit-client against EPU: the prescriber's transaction, reads, searches with paging,
// then the laboratory's operations. Prints one JSON object of what it saw.
import { Client } from 'fhir-kit-client';

const [baseUrl, prescriberToken, labToken, bundleJson] = process.argv.slice(2);

function client(token) {
  return new Client({ baseUrl, customHeaders: { Authorization: `Bearer ${token}` } });
}

async function main() {
  const prescriber = client(prescriberToken);
  const seen = {};
  const statement = await prescriber.capabilityStatement();
  seen.fhirVersion = statement.fhirVersion;
  const answer = await prescriber.transaction({ body: JSON.parse(bundleJson) });
  seen.statuses = answer.entry.slice(1).map((entry) => entry.response.status);
  const code = answer.entry[1].response.location.split('/')[1].split('-')[0];
  seen.code = code;
  const read = await prescriber.read({ resourceType: 'ServiceRequest', id: `${code}-L1` });
  seen.readId = read.id;
  let page = await prescriber.search({
    resourceType: 'ServiceRequest',
    searchParams: { requisition: code, _count: 1 },
  });
  const ids = [];
  while (page) {
    (page.entry || []).forEach((entry) => ids.push(entry.resource.id));
    page = await prescriber.nextPage({ bundle: page });
  }
  seen.pagedIds = ids;
  const counted = await prescriber.search({
    resourceType: 'ServiceRequest',
    searchParams: { _summary: 'count', code: '57022-6' },
  });
  seen.total = counted.total;
  const lab = client(labToken);
  const taken = await lab.operation({
    name: '$take',
    resourceType: 'Task',
    input: { resourceType: 'Parameters', parameter: [{ name: 'code', valueString: code }] },
  });
  seen.takenStatus = taken.parameter[0].resource.status;
  const released = await lab.operation({ name: '$release', resourceType: 'Task', id: code });
  seen.releasedStatus = released.status;
  try {
    await prescriber.search({ resourceType: 'ServiceRequest', searchParams: { subject: 'Patient/1' } });
    seen.refused = false;
  } catch (error) {
    seen.refused = error.response && error.response.status;
  }
  process.stdout.write(JSON.stringify(seen));
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error));
  if (error && error.response) process.stderr.write(JSON.stringify(error.response.data || {}));
  process.exit(1);
});
