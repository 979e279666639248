// The shape deltaserve's dashboard must have, built from Grafana's published schema
// (@grafana/schema): the Dashboard model, with every panel either a row, a `timeseries` panel
// whose options and custom field config follow the timeseries panel schema, or a `stat` panel
// whose options follow the stat panel schema, and every query a Prometheus query.
import type {
  Dashboard, DataSourceRef, FieldConfig, FieldConfigSource, Panel, RowPanel,
} from "@grafana/schema";
import type {
  FieldConfig as TimeSeriesFieldConfig, Options as TimeSeriesOptions,
} from "@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen";
import type {
  Options as StatOptions,
} from "@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen";

// A schema type as it appears in JSON: string enums become the union of their values.
export type Json<T> = T extends string ? `${T}`
  : T extends (infer U)[] ? Json<U>[]
  : T extends object ? { [K in keyof T]: Json<T[K]> }
  : T;

// A query of Grafana's Prometheus data source (its query model: expr, legend, range/instant).
export interface PrometheusQuery {
  refId: string;
  datasource?: DataSourceRef;
  expr: string;
  legendFormat?: string;
  editorMode?: "code" | "builder";
  range?: boolean;
  instant?: boolean;
  format?: "time_series" | "table" | "heatmap";
  interval?: string;
  hide?: boolean;
}

type PanelBase = Omit<Panel, "type" | "options" | "fieldConfig" | "targets">;
type FieldConfigWith<Custom> = Omit<FieldConfigSource, "defaults"> & {
  defaults: Omit<FieldConfig, "custom"> & { custom?: Custom };
};

export type TimeSeriesPanel = PanelBase & {
  type: "timeseries";
  options: TimeSeriesOptions;
  fieldConfig: FieldConfigWith<TimeSeriesFieldConfig>;
  targets: PrometheusQuery[];
};
export type StatPanel = PanelBase & {
  type: "stat";
  options: StatOptions;
  fieldConfig: FieldConfigWith<never>;
  targets: PrometheusQuery[];
};

export type DeltaServeDashboard = Json<Omit<Dashboard, "panels"> & {
  panels: Array<RowPanel | TimeSeriesPanel | StatPanel>;
}>;
