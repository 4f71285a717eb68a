/**
 * Which instance serves each service of the cluster file on this node. An agent starts the
 * services the file puts on it; migration (lib/cluster/migration.ts) then starts incoming
 * instances here and retires ones that moved away, so "the instance of service S here" is
 * kept as a fact of its own rather than read off the file.
 */
import type { Logger } from 'pino';
import type { ServiceLocation } from '../backend.js';
import type { ClusterConfig, ClusterService } from '../cluster/config.js';
import type { ServiceHost } from '../cluster/migration.js';
import type { Router } from '../cluster/router.js';
import { DvkError } from '../errors.js';
import type { EndpointTable } from './endpoints.js';
import type { ServiceInstance, ServiceInstances } from './services.js';

export class ServicePlacement implements ServiceHost {
  /** The instance serving each service here, by name. */
  private readonly current = new Map<string, ServiceInstance>();

  constructor(
    private readonly config: ClusterConfig,
    private readonly self: string,
    private readonly table: EndpointTable,
    private readonly instances: ServiceInstances,
    private readonly log: Logger,
  ) {}

  /** Starts the services the cluster file puts on this node. */
  startOwn(): void {
    for (const [name, s] of Object.entries(this.config.services)) {
      if (s.node !== this.self) continue;
      try {
        this.track(name, this.instances.start(specOf(name, s)));
      } catch (err) {
        this.log.error({ err, service: name }, 'cannot start service');
      }
    }
  }

  serviceAt(dc: number, endpoint: number): string | undefined {
    for (const [name, s] of Object.entries(this.config.services)) {
      if (s.endpoint === endpoint && this.table.dcIdOf(s.dc) === dc) return name;
    }
    return undefined;
  }

  /** Every service of the file, and where it serves now, as `router` and the table know. */
  locations(router: Router): ServiceLocation[] {
    return Object.entries(this.config.services).map(([name, s]) => {
      const dc = this.table.dcIdOf(s.dc);
      const local = dc === undefined ? undefined : this.table.local(dc, s.endpoint);
      const remote = dc === undefined ? undefined : router.where(dc, s.endpoint);
      const at = local
        ? { node: this.self, generation: local.generation, epoch: local.epoch }
        : remote
          ? { node: router.nameOf(remote.node), generation: remote.generation, epoch: remote.epoch }
          : { node: null, generation: null, epoch: null };
      const dcNodes = this.config.dcs.find((d) => d.name === s.dc)?.nodes ?? [];
      return { name, dc: s.dc, endpoint: s.endpoint, ...at, dcNodes };
    });
  }

  instanceOf(service: string): ServiceInstance | undefined {
    return this.current.get(service);
  }

  startIncoming(service: string): ServiceInstance {
    const s = this.config.services[service];
    if (!s) throw new DvkError('EINVAL', `no service ${service} in the cluster file`);
    return this.instances.start(specOf(service, s), { incoming: true });
  }

  adopt(service: string, instance: ServiceInstance): void {
    this.track(service, instance);
  }

  private track(service: string, instance: ServiceInstance): void {
    this.current.set(service, instance);
    void instance.exited.then(() => {
      if (this.current.get(service) === instance) this.current.delete(service);
    });
  }
}

function specOf(name: string, s: ClusterService) {
  return { name, module: s.module, dc: s.dc, endpoint: s.endpoint };
}
