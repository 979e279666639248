// The configuration file of prometheus-adapter (--config), as its documentation
// (docs/config.md) describes it: rules that turn Prometheus series into custom metrics.
export interface SeriesFilter {
  is?: string;
  isNot?: string;
}

export interface ResourceMapping {
  // Prometheus label -> Kubernetes resource it names.
  overrides?: Record<string, { group?: string; resource: string }>;
  template?: string;
  namespaced?: boolean;
}

export interface AdapterRule {
  seriesQuery: string;
  seriesFilters?: SeriesFilter[];
  resources: ResourceMapping;
  name?: { matches?: string; as?: string };
  metricsQuery: string;
}

export interface AdapterConfig {
  rules?: AdapterRule[];
  externalRules?: AdapterRule[];
}
